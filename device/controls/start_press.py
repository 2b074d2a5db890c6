"""START's one button, two meanings: a short press joins, a hold leaves.

    start = StartPress(emit)        # emit(StartPressed()) or emit(StartHeld()), once per press
    start.pressed(); ...; start.held()      # the hold timer fired first: StartHeld
    start.pressed(); start.released()       # let go before it: StartPressed

Shared by the GPIO button (``device.controls.buttons``, gpiozero's hold timer) and the MIDI pad
(``device.controls.pad``, a timer on the loop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from device.lifecycle.events import Event, StartHeld, StartPressed


class StartPress:
    """Tells a short press of START from a hold: exactly one event per press.

    gpiozero's hold timer and the release arrive on different threads, and a release right at
    the hold time can race the timer; the lock makes whichever comes first decide.
    """

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._down = False  # pressed, and neither held nor released yet

    def pressed(self) -> None:
        with self._lock:
            self._down = True

    def held(self) -> None:
        with self._lock:
            decided, self._down = self._down, False
        if decided:
            self._emit(StartHeld())

    def released(self) -> None:
        with self._lock:
            decided, self._down = self._down, False
        if decided:
            self._emit(StartPressed())
