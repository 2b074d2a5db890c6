"""The box's buttons, turned into lifecycle events on the asyncio loop.

Wire each push button from its GPIO pin (``pins.start``, ``pins.clap``, …) to a ground pin; the
Pi's internal pull-up holds the pin high until the button is pressed.

    buttons = Buttons(settings.pins, factory, asyncio.get_running_loop(), machine_inbox.put_nowait)
    ...
    buttons.close()

START is a short press (join) or a hold for ``pins.hold_seconds`` (leave), never both. The other
buttons give their event when pressed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial

from gpiozero import Button
from gpiozero.exc import GPIOZeroError
from gpiozero.pins import Factory

from device.controls.start_press import StartPress
from device.errors import ControlsError
from device.lifecycle.events import (
    Event,
    MutePressed,
    ReactPressed,
    VolumePressed,
)
from device.settings import PinSettings
from session_server.protocol import ReactionKind

# Contacts of a cheap arcade button chatter for a few milliseconds; a press is far longer.
BOUNCE_SECONDS = 0.02

# The buttons other than START: the setting that names the pin, and the event a press gives.
PRESS_EVENTS: tuple[tuple[str, Event], ...] = (
    ("clap", ReactPressed(ReactionKind.CLAP)),
    ("heart", ReactPressed(ReactionKind.HEART)),
    ("volume_up", VolumePressed(+1)),
    ("volume_down", VolumePressed(-1)),
    ("mute", MutePressed()),
)


class Buttons:
    """START, CLAP, HEART, VOLUME up/down and MUTE, handing events to ``on_event`` on ``loop``.

    gpiozero calls back on its own threads (the pin library's, and its hold timer's); every event
    crosses to the loop with ``loop.call_soon_threadsafe`` and ``on_event`` runs on the loop.
    """

    def __init__(
        self,
        settings: PinSettings,
        factory: Factory,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[Event], None],
    ) -> None:
        self._loop = loop
        self._on_event = on_event
        self._closed = False
        self._buttons: list[Button] = []
        self._start = StartPress(self._emit)
        try:
            start = self._open(factory, settings, "start")
            start.hold_time = settings.hold_seconds
            start.when_pressed = self._start.pressed
            start.when_held = self._start.held
            start.when_released = self._start.released
            for name, event in PRESS_EVENTS:
                self._open(factory, settings, name).when_pressed = partial(self._emit, event)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the pins; no event is handed over after this returns."""
        self._closed = True
        for button in self._buttons:
            button.close()
        self._buttons.clear()

    def _open(self, factory: Factory, settings: PinSettings, name: str) -> Button:
        pin: int = getattr(settings, name)
        try:
            button = Button(pin, pull_up=True, bounce_time=BOUNCE_SECONDS, pin_factory=factory)
        except GPIOZeroError as exc:
            raise ControlsError(f"cannot use GPIO{pin} for the button pins.{name}: {exc}") from exc
        self._buttons.append(button)
        return button

    def _emit(self, event: Event) -> None:
        # Runs on a gpiozero thread: touch nothing of the loop's but call_soon_threadsafe.
        if self._closed:
            return
        # A closed loop raises RuntimeError: the box is stopping and nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_event, event)
