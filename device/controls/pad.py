"""A MIDI pad standing in for the big buttons, for homes that buy a ready-made pad rather than
wire GPIO buttons.

    pad = Pad(settings.midi.pad, Backend(settings.midi.backend),
              hold_seconds=settings.pins.hold_seconds, on_event=agent.post)
    pad.start()                     # on the loop; MidiPortError when rtmidi lacks the backend
    ...
    await pad.aclose()

Each button is one key of the pad (``midi.pad``): a note (``"note 36"``) or a controller
(``"cc 20"``). A key is down from its note-on to its note-off; a controller from a value of 64 or
more to one below (MIDI's rule for switch controllers: pads in CC mode send 127 and 0). START
works as the GPIO button does (``StartPress``): let go before ``pins.hold_seconds`` and it joins,
hold it that long and it leaves. The others give their event when struck.

The pad's port is opened by the pad alone: the MIDI bridge avoids it (``MidiPorts.avoid_inputs``),
so that pressing START is never heard as a drum at the school. A pad pulled out and plugged in
again is found again, as every MIDI port is (``device.midi.ports``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import mido
import structlog

from device.controls.buttons import PRESS_EVENTS
from device.controls.start_press import StartPress
from device.lifecycle.events import Event
from device.midi.ports import POLL_SECONDS, Backend, MidiPorts, PortsState
from device.settings import PadSettings

log = structlog.get_logger("twm.controls.pad")

SWITCH_ON = 64  # a switch controller's value from here up means "on"

_EVENTS = dict(PRESS_EVENTS)


class Pad:
    """The pad's keys as lifecycle events, handed to ``on_event`` on the loop."""

    def __init__(
        self,
        settings: PadSettings,
        backend: Backend,
        *,
        hold_seconds: float,
        on_event: Callable[[Event], None],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if settings.port is None:
            raise ValueError("the pad needs midi.pad.port")
        self._settings = settings
        self._keys = settings.buttons()
        self._channel = None if settings.channel is None else settings.channel - 1
        self._hold_seconds = hold_seconds
        self._on_event = on_event
        self._start = StartPress(on_event)
        self._hold_timer: asyncio.TimerHandle | None = None
        self._down: set[str] = set()  # buttons whose key is down now
        self._ports = MidiPorts(
            backend,
            inputs=[settings.port],
            on_message=self.received,
            on_change=_log_pad,
            accept=self._claims,  # on rtmidi's thread: settings only
            poll_seconds=poll_seconds,
        )
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether the pad's port is open now."""
        return bool(self._ports.state.inputs)

    def start(self) -> None:
        self._ports.start()

    async def aclose(self) -> None:
        self._closed = True
        self._cancel_hold()
        await self._ports.aclose()

    def received(self, message: mido.Message, _t_ms: float = 0.0) -> None:
        """A message from the pad (on the loop; when it arrived does not matter here)."""
        if self._closed or not self._claims(message):
            return
        button = self._keys[_key(message)]
        down = _is_down(message)
        if down == (button in self._down):
            return  # a repeat (aftertouch-happy pads resend note-ons; CCs stream values)
        if down:
            self._down.add(button)
        else:
            self._down.discard(button)
        if button == "start":
            self._start_key(down)
        elif down:
            self._on_event(_EVENTS[button])

    def _start_key(self, down: bool) -> None:
        if down:
            self._start.pressed()
            self._cancel_hold()
            loop = asyncio.get_running_loop()
            self._hold_timer = loop.call_later(self._hold_seconds, self._start.held)
        else:
            self._cancel_hold()
            self._start.released()

    def _cancel_hold(self) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _claims(self, message: mido.Message) -> bool:
        if message.type not in ("note_on", "note_off", "control_change"):
            return False
        if self._channel is not None and message.channel != self._channel:
            return False
        return _key(message) in self._keys


def _key(message: mido.Message) -> tuple[str, int]:
    if message.type == "control_change":
        return ("cc", message.control)
    return ("note", message.note)


def _is_down(message: mido.Message) -> bool:
    if message.type == "control_change":
        return bool(message.value >= SWITCH_ON)
    return bool(message.type == "note_on" and message.velocity > 0)


def _log_pad(state: PortsState) -> None:
    if state.inputs:
        log.info("the MIDI pad is plugged in", port=state.inputs[0])
    else:
        log.warning("the MIDI pad is not plugged in: its buttons do nothing until it is")
