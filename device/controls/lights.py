"""The status light (one pattern per state) and the ON-AIR light.

Wire each LED with its resistor from its GPIO pin (``pins.status_light``, ``pins.on_air_light``)
to ground. The status light dims, so its pin must do PWM (lgpio or rpigpio; the mock pins do).

    lights = Lights(settings.pins, factory)
    lights.show(State.SESSION_SOON)        # slow glow
    lights.flash_reaction(ReactionKind.CLAP)
    lights.set_on_air(True)
    lights.close()

Call it from one thread (the loop's). Patterns play on gpiozero's own background thread: each is
a stream of brightness levels (``patterns.frames``) handed to the LED's ``source``, which gpiozero
copies to the pin every ``TICK`` seconds. One mechanism plays every pattern, a reaction's flash
followed by the state's pattern included, so no thread of ours has to turn the flash back.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from gpiozero import LED, PWMLED
from gpiozero.exc import GPIOZeroError, PinPWMUnsupported
from gpiozero.pins import Factory

from device.controls.patterns import PATTERNS, REACTION_FLASHES, TICK, Pattern, Steady, frames
from device.errors import ControlsError
from device.lifecycle.states import State
from device.settings import PinSettings
from session_server.protocol import ReactionKind


class Lights:
    """Shows the box's state on the status light, and the ON-AIR light exactly on or off."""

    def __init__(self, settings: PinSettings, factory: Factory) -> None:
        self._closed = False
        self._pattern: Pattern = Steady(0.0)
        try:
            self._status = PWMLED(settings.status_light, pin_factory=factory)
        except PinPWMUnsupported as exc:
            raise ControlsError(
                f"pins.factory = {settings.factory!r} cannot dim the status light "
                f"(GPIO{settings.status_light}): use 'lgpio'"
            ) from exc
        except GPIOZeroError as exc:
            raise ControlsError(
                f"cannot use GPIO{settings.status_light} for pins.status_light: {exc}"
            ) from exc
        self._status.source_delay = TICK
        try:
            self._on_air = LED(settings.on_air_light, initial_value=False, pin_factory=factory)
        except GPIOZeroError as exc:
            self._status.close()
            raise ControlsError(
                f"cannot use GPIO{settings.on_air_light} for pins.on_air_light: {exc}"
            ) from exc

    def show(self, state: State) -> None:
        """Play ``state``'s pattern (``patterns.PATTERNS``) from its start."""
        self._pattern = PATTERNS[state]
        self._play(frames(self._pattern))

    def flash_reaction(self, kind: ReactionKind) -> None:
        """A short bright flash for a reaction from the other side, then the state's pattern."""
        self._play(chain(frames(REACTION_FLASHES[kind]), frames(self._pattern)))

    def set_on_air(self, on: bool) -> None:
        """The ON-AIR light: lit exactly while the microphone is being sent."""
        if on:
            self._on_air.on()
        else:
            self._on_air.off()

    def close(self) -> None:
        """Both lights off, and their pins released."""
        if self._closed:
            return
        self._closed = True
        self._status.source = None
        self._status.off()
        self._on_air.off()
        self._status.close()
        self._on_air.close()

    def _play(self, levels: Iterator[float]) -> None:
        # Stop gpiozero's thread playing the last pattern (it wakes at once) before the next.
        self._status.source = None
        self._status.source = levels
