"""MIDI across the data channel: what travels, what comes back, what a peer cannot make us do."""

from __future__ import annotations

import contextlib
import json

import mido
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.midi.errors import MidiDataError
from device.midi.wire import WIRE_TYPES, Timed, batches, decode, travels
from session_server.protocol import (
    CHANNEL_VOICE_DATA_BYTES,
    MAX_MIDI_EVENTS,
    Heartbeat,
    MidiEvents,
    Reaction,
    ReactionKind,
    encode,
    parse_peer_message,
)


@st.composite
def channel_voice(draw: st.DrawFn) -> mido.Message:
    kind = draw(st.sampled_from(sorted(CHANNEL_VOICE_DATA_BYTES)))
    channel = draw(st.integers(0, 15))
    data = draw(
        st.lists(
            st.integers(0, 127),
            min_size=CHANNEL_VOICE_DATA_BYTES[kind],
            max_size=CHANNEL_VOICE_DATA_BYTES[kind],
        )
    )
    return mido.Message.from_bytes([kind | channel, *data])


def _roundtrip(played: list[Timed]) -> list[Timed]:
    received: list[Timed] = []
    for batch in batches(played):
        received.extend(decode(encode(batch)))
    return received


@given(
    st.lists(
        st.tuples(st.floats(0, 1e10, allow_nan=False), channel_voice()), min_size=1, max_size=50
    )
)
def test_every_channel_voice_message_arrives_as_played(
    played: list[tuple[float, mido.Message]],
) -> None:
    received = _roundtrip([Timed(t, message) for t, message in played])
    assert [(timed.t_ms, timed.message) for timed in received] == played


def test_every_kind_the_issue_names_travels() -> None:
    messages = [
        mido.Message("note_on", channel=9, note=36, velocity=100),
        mido.Message("note_off", channel=9, note=36, velocity=0),
        mido.Message("control_change", channel=0, control=64, value=127),
        mido.Message("pitchwheel", channel=1, pitch=-8192),
        mido.Message("program_change", channel=2, program=19),
        mido.Message("aftertouch", channel=3, value=5),
        mido.Message("polytouch", channel=4, note=60, value=7),
    ]
    assert {message.type for message in messages} == WIRE_TYPES
    received = _roundtrip([Timed(float(i), message) for i, message in enumerate(messages)])
    assert [timed.message for timed in received] == messages


def test_clock_sysex_and_other_system_messages_stay_home() -> None:
    home_only = [
        mido.Message("clock"),
        mido.Message("active_sensing"),
        mido.Message("start"),
        mido.Message("stop"),
        mido.Message("reset"),
        mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]),
        mido.Message("songpos", pos=16),
        mido.Message("quarter_frame", frame_type=1, frame_value=2),
    ]
    assert not any(travels(message) for message in home_only)
    assert batches([Timed(0.0, message) for message in home_only]) == []
    note = mido.Message("note_on", note=60, velocity=90)
    mixed = [Timed(1.0, home_only[0]), Timed(2.0, note), Timed(3.0, home_only[5])]
    assert _roundtrip(mixed) == [Timed(2.0, note)]


def test_a_long_phrase_is_split_within_the_wire_bound_in_order() -> None:
    notes = [
        Timed(float(i), mido.Message("note_on", note=i % 128, velocity=1 + i % 127))
        for i in range(MAX_MIDI_EVENTS * 2 + 3)
    ]
    split = batches(notes)
    assert [len(batch.events) for batch in split] == [MAX_MIDI_EVENTS, MAX_MIDI_EVENTS, 3]
    assert _roundtrip(notes) == notes


def _batch(*events: object) -> str:
    return json.dumps({"type": "midi", "events": list(events)})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("not json", "midi batch"),
        (b"\xff\xfe", "midi batch"),
        (json.dumps({"type": "midi"}), "events"),
        (_batch(), "events"),
        (_batch({"t_ms": 1, "data": [0xF0, 0x7E, 0xF7]}), "not a channel-voice"),
        (_batch({"t_ms": 1, "data": [0xF8]}), "at least 2"),
        (_batch({"t_ms": 1, "data": [0x90, 60]}), "takes 2 data byte"),
        (_batch({"t_ms": 1, "data": [0xC0, 5, 6]}), "takes 1 data byte"),
        (_batch({"t_ms": 1, "data": [0x90, 60, 128]}), "0-127"),
        (_batch({"t_ms": 1, "data": [0x90, 60, 256]}), "less than or equal to 255"),
        (_batch({"t_ms": 1, "data": [0x40, 60, 64]}), "not a channel-voice"),
        (_batch({"t_ms": 1, "data": [0x90, 60, 64, 1]}), "at most 3"),
        (_batch({"t_ms": -1, "data": [0x90, 60, 64]}), "greater than or equal to 0"),
        (_batch({"t_ms": 1, "data": [0x90, 60, 64], "port": "x"}), "extra"),
        (_batch({"t_ms": "NaN", "data": [0x90, 60, 64]}), "finite"),
        (_batch(*[{"t_ms": 1, "data": [0x90, 60, 64]}] * (MAX_MIDI_EVENTS + 1)), "at most"),
    ],
)
def test_bad_input_from_the_peer_is_refused_with_a_reason(data: str | bytes, why: str) -> None:
    with pytest.raises(MidiDataError, match=f"(?i){why}"):
        decode(data)


def test_a_reaction_is_not_taken_for_midi() -> None:
    with pytest.raises(MidiDataError, match="expected a 'midi' message"):
        decode(encode(Reaction(kind=ReactionKind.CLAP)))


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_no_bytes_from_the_peer_raise_anything_but_a_midi_data_error(data: bytes | str) -> None:
    with contextlib.suppress(MidiDataError):
        decode(data)


def test_the_peer_message_union_still_parses_the_older_messages_and_now_midi() -> None:
    assert isinstance(parse_peer_message(encode(Heartbeat(seq=3))), Heartbeat)
    assert isinstance(parse_peer_message(encode(Reaction(kind=ReactionKind.WAVE))), Reaction)
    midi = parse_peer_message(_batch({"t_ms": 12.5, "data": [0x91, 64, 100]}))
    assert isinstance(midi, MidiEvents)
    assert midi.events[0].t_ms == 12.5
