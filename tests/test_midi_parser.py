"""A raw MIDI stream with running status and clock bytes in between: every note comes through."""

from __future__ import annotations

import itertools

import mido
from hypothesis import given
from hypothesis import strategies as st

from device.midi.parser import MAX_SYSEX, StreamParser
from session_server.protocol import CHANNEL_VOICE_DATA_BYTES

CLOCK, ACTIVE_SENSING = 0xF8, 0xFE


def parse(*chunks: list[int]) -> list[mido.Message]:
    parser = StreamParser()
    return [message for chunk in chunks for message in parser.feed(chunk)]


def notes(messages: list[mido.Message]) -> list[mido.Message]:
    return [message for message in messages if message.type in ("note_on", "note_off")]


def test_running_status_makes_a_note_of_every_data_pair() -> None:
    # One status, then three notes: the way a keyboard saves bytes.
    stream = [0x90, 60, 100, 64, 90, 67, 80, 60, 0, 64, 0, 67, 0]
    assert [(m.note, m.velocity) for m in notes(parse(stream))] == [
        (60, 100),
        (64, 90),
        (67, 80),
        (60, 0),
        (64, 0),
        (67, 0),
    ]


def test_a_clock_byte_inside_a_note_loses_nothing() -> None:
    stream = [0x90, CLOCK, 60, CLOCK, 100, ACTIVE_SENSING, 62, CLOCK, 101]
    parsed = parse(stream)
    assert notes(parsed) == [
        mido.Message("note_on", note=60, velocity=100),
        mido.Message("note_on", note=62, velocity=101),
    ]
    assert [m.type for m in parsed].count("clock") == 3
    assert [m.type for m in parsed].count("active_sensing") == 1
    # In the order they came: the first clock before the note it interrupted.
    assert parsed[0].type == "clock" and parsed[2].type == "note_on"


def test_mido_s_own_parser_would_lose_these_notes() -> None:
    # Why device.midi.parser exists: this test fails if mido ever learns running status and
    # real-time bytes in the middle of a message, and then the module could go.
    stream = [0x90, 60, 100, 64, 90, 0x90, CLOCK, 67, 80]
    theirs = notes(mido.parse_all(stream))
    ours = notes(parse(stream))
    assert len(ours) == 3
    assert len(theirs) < 3


def test_system_common_cancels_running_status_and_a_new_status_cuts_a_message_short() -> None:
    # song select (0xF3 5) ends running status: the 61 100 that follows has no status.
    # 0x90 62 then 0xB0: the half note is dropped, the control change is whole.
    stream = [0x90, 60, 100, 0xF3, 5, 61, 100, 0x90, 62, 0xB0, 64, 127]
    parsed = parse(stream)
    assert parsed == [
        mido.Message("note_on", note=60, velocity=100),
        mido.Message("song_select", song=5),
        mido.Message("control_change", control=64, value=127),
    ]


def test_a_sysex_comes_whole_and_an_endless_one_is_dropped() -> None:
    sysex = [0xF0, 0x7E, 0x7F, CLOCK, 0x09, 0x01, 0xF7]
    parsed = parse(sysex, [0x80, 60, 0])
    assert [m.type for m in parsed] == ["clock", "sysex", "note_off"]
    assert parsed[1].data == (0x7E, 0x7F, 0x09, 0x01)
    too_long = [0xF0, *([1] * (MAX_SYSEX + 10)), 0xF7, 0x90, 60, 1]
    assert [m.type for m in parse(too_long)] == ["note_on"]


def test_stray_data_and_undefined_bytes_are_ignored() -> None:
    assert parse([1, 2, 3, 0xF9, 0xFD, 0xF4, 5, 0x80, 60, 0]) == [
        mido.Message("note_off", note=60, velocity=0)
    ]


@st.composite
def performance(draw: st.DrawFn) -> tuple[list[mido.Message], list[int], list[int]]:
    """Channel-voice messages, their bytes with running status and real-time bytes sprinkled
    anywhere (also between a message's bytes), and where to cut the stream into chunks."""
    messages: list[mido.Message] = []
    stream: list[int] = []
    running: int | None = None
    for _ in range(draw(st.integers(1, 20))):
        status = draw(st.sampled_from(sorted(CHANNEL_VOICE_DATA_BYTES))) | draw(st.integers(0, 15))
        data = draw(
            st.lists(
                st.integers(0, 127),
                min_size=CHANNEL_VOICE_DATA_BYTES[status & 0xF0],
                max_size=CHANNEL_VOICE_DATA_BYTES[status & 0xF0],
            )
        )
        messages.append(mido.Message.from_bytes([status, *data]))
        # Running status: the status byte only when it changes (or when the sender likes).
        wire = data if status == running and draw(st.booleans()) else [status, *data]
        running = status
        for byte in wire:
            stream.extend(draw(st.lists(st.sampled_from([CLOCK, ACTIVE_SENSING]), max_size=2)))
            stream.append(byte)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    return messages, stream, cuts


@given(performance())
def test_every_message_of_a_running_status_stream_with_real_time_bytes_comes_through(
    case: tuple[list[mido.Message], list[int], list[int]],
) -> None:
    messages, stream, cuts = case
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    parsed = parse(*chunks)
    assert [m for m in parsed if m.type not in ("clock", "active_sensing")] == messages
    assert sum(m.type in ("clock", "active_sensing") for m in parsed) == sum(
        byte in (CLOCK, ACTIVE_SENSING) for byte in stream
    )
