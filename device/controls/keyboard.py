"""The box's buttons from a terminal's keys, where there is no GPIO (a laptop, the demo).

Each key drives a mock pin low and high, as a finger on a real button would; ``Buttons`` reads
those pins with the same gpiozero code that runs on the Pi. Open the buttons first (they set the
pins' pull-ups), then the keyboard:

    factory = pin_factory(settings.pins)                 # pins.factory = "mock"
    buttons = Buttons(settings.pins, factory, loop, on_event)
    keyboard = Keyboard(settings.pins, factory, loop)
    keyboard.start()                                     # prints the keys
    ...
    keyboard.close()                                     # gives the terminal back as it was
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
import tty
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, TextIO

from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from device.errors import ControlsError
from device.settings import PinSettings

HELP = "keys: s START, S/L hold START (leave), c clap, h heart, + - volume, m mute, ? help"

# A hold lasts this much past pins.hold_seconds, so that gpiozero's hold timer surely fires.
HOLD_MARGIN_SECONDS = 0.2

Gesture = Literal["press", "hold"]

# key: (the setting naming the button's pin, how the key works it)
KEYS: Mapping[str, tuple[str, Gesture]] = MappingProxyType(
    {
        "s": ("start", "press"),
        "S": ("start", "hold"),
        "L": ("start", "hold"),
        "l": ("start", "hold"),
        "c": ("clap", "press"),
        "h": ("heart", "press"),
        "+": ("volume_up", "press"),
        "=": ("volume_up", "press"),  # the unshifted "+" key
        "-": ("volume_down", "press"),
        "m": ("mute", "press"),
    }
)


class Keyboard:
    """Presses the mock buttons from single keys typed on ``fd`` (default: standard input).

    On a terminal the keys arrive one by one without Enter (cbreak mode: no echo, and Ctrl-C
    still stops the box); ``close()`` puts the terminal back as it was.
    """

    def __init__(
        self,
        settings: PinSettings,
        factory: Factory,
        loop: asyncio.AbstractEventLoop,
        fd: int | None = None,
        out: TextIO | None = None,
    ) -> None:
        if settings.factory != "mock" or not isinstance(factory, MockFactory):
            raise ControlsError(
                "the keyboard drives mock pins only, and pins.factory is "
                f"{settings.factory!r}: set pins.factory = 'mock' for a laptop or the demo"
            )
        self._loop = loop
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._out = sys.stdout if out is None else out
        self._pins = {name: factory.pin(getattr(settings, name)) for name, _ in KEYS.values()}
        self._hold_seconds = settings.hold_seconds + HOLD_MARGIN_SECONDS
        self._holding: asyncio.TimerHandle | None = None
        self._terminal: list[Any] | None = None
        self._reading = False

    def start(self) -> None:
        """Read keys from now on, and print which key does what."""
        if os.isatty(self._fd):
            self._terminal = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        try:
            self._loop.add_reader(self._fd, self._read)
        except OSError as exc:  # a regular file or /dev/null cannot be watched
            self._restore_terminal()
            raise ControlsError(
                f"cannot read keys from file descriptor {self._fd} ({exc}): run the box in a "
                "terminal, or set keyboard = false"
            ) from exc
        self._reading = True
        self.help()

    def help(self) -> None:
        self._out.write(HELP + "\n")
        self._out.flush()

    def close(self) -> None:
        """Stop reading, let go of a START being held, and give the terminal back."""
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._holding is not None:
            self._holding.cancel()
            self._let_go()
        self._restore_terminal()

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1024)
        except OSError:  # the terminal went away (EIO on a closed pseudo-terminal)
            data = b""
        if not data:
            self._loop.remove_reader(self._fd)
            self._reading = False
            return
        for key in data.decode("utf-8", errors="replace"):
            self._key(key)

    def _key(self, key: str) -> None:
        if key == "?":
            self.help()
            return
        if key not in KEYS:
            return
        name, gesture = KEYS[key]
        pin = self._pins[name]
        if name == "start" and self._holding is not None:
            return  # START is already down, being held
        pin.drive_low()
        if gesture == "hold":
            self._holding = self._loop.call_later(self._hold_seconds, self._let_go)
        else:
            pin.drive_high()

    def _let_go(self) -> None:
        self._holding = None
        self._pins["start"].drive_high()

    def _restore_terminal(self) -> None:
        if self._terminal is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._terminal)
            self._terminal = None
