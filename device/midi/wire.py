"""MIDI messages as they cross the data channel: ``MidiEvents`` of timestamped channel-voice
messages (``session_server.protocol``), to and from mido.

    for batch in batches([Timed(now_ms(), msg) for msg in played]):   # none if nothing travels
        channel.send(encode(batch))
    ...
    for timed in decode(data):                                  # MidiDataError on bad input
        playout.receive(timed.t_ms, timed.message)

Only whole channel-voice messages travel (``WIRE_TYPES``); clock, sysex, active sensing and the
rest are dropped on the sending side: they mean nothing to the far side's synth, and a sysex
could reprogram it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import mido
from pydantic import ValidationError

from device.midi.errors import MidiDataError
from session_server.protocol import MAX_MIDI_EVENTS, MidiEvent, MidiEvents, parse_peer_message

WIRE_TYPES = frozenset(
    {
        "note_on",
        "note_off",
        "control_change",
        "pitchwheel",
        "program_change",
        "aftertouch",
        "polytouch",
    }
)


@dataclass(frozen=True)
class Timed:
    """A message and when it was played, in ms of its own side's monotonic clock."""

    t_ms: float
    message: mido.Message


def now_ms() -> float:
    """The sending side's timestamp: monotonic, so a wall-clock step cannot reorder notes."""
    return time.monotonic() * 1000.0


def travels(message: mido.Message) -> bool:
    """Whether ``message`` may cross the link."""
    return message.type in WIRE_TYPES


def to_event(timed: Timed) -> MidiEvent | None:
    """The wire form of one message, or None for a message that does not travel."""
    if not travels(timed.message):
        return None
    return MidiEvent(t_ms=max(0.0, timed.t_ms), data=list(timed.message.bytes()))


def batches(played: Iterable[Timed]) -> list[MidiEvents]:
    """The messages that travel, as as many batches as the wire's bound needs."""
    events = [event for event in map(to_event, played) if event is not None]
    return [
        MidiEvents(events=events[start : start + MAX_MIDI_EVENTS])
        for start in range(0, len(events), MAX_MIDI_EVENTS)
    ]


def from_event(event: MidiEvent) -> Timed:
    """The mido message of a validated event (the model has checked it is whole)."""
    try:
        message = mido.Message.from_bytes(event.data)
    except ValueError as exc:  # the model's checks should make this impossible; stay safe
        raise MidiDataError(f"not a MIDI message: {exc}") from None
    return Timed(event.t_ms, message)


def unpack(batch: MidiEvents) -> list[Timed]:
    return [from_event(event) for event in batch.events]


def decode(data: str | bytes) -> list[Timed]:
    """The messages in one data-channel message from the peer, or ``MidiDataError`` saying
    what was wrong (a peer's bytes are outside input: never trusted, never fatal)."""
    try:
        message = parse_peer_message(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'message'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)[:3]
        )
        raise MidiDataError(f"not a MIDI batch from the peer: {problems}") from None
    if not isinstance(message, MidiEvents):
        raise MidiDataError(f"expected a 'midi' message from the peer, got {message.type!r}")
    return unpack(message)
