"""No stuck notes: whatever was left sounding is released, on every channel that was used."""

from __future__ import annotations

import mido
from hypothesis import given
from hypothesis import strategies as st

from device.midi.sounding import ALL_NOTES_OFF, SUSTAIN, SoundingNotes


def on(note: int, channel: int = 0, velocity: int = 100) -> mido.Message:
    return mido.Message("note_on", channel=channel, note=note, velocity=velocity)


def off(note: int, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", channel=channel, note=note, velocity=64)


def test_held_notes_are_released_and_pedal_and_all_notes_off_follow_per_channel() -> None:
    sounding = SoundingNotes()
    for message in (on(60), on(64), off(60), on(38, channel=9), on(70, channel=3), off(70, 3)):
        sounding.observe(message)
    sounding.observe(mido.Message("control_change", channel=0, control=SUSTAIN, value=127))
    assert sounding.notes == {(0, 64), (9, 38)}
    released = sounding.release()
    note_offs = {(m.channel, m.note) for m in released if m.type == "note_off"}
    assert note_offs == {(0, 64), (9, 38)}
    controls = [(m.channel, m.control, m.value) for m in released if m.type == "control_change"]
    assert controls == [
        (0, SUSTAIN, 0),
        (0, ALL_NOTES_OFF, 0),
        (3, SUSTAIN, 0),
        (3, ALL_NOTES_OFF, 0),
        (9, SUSTAIN, 0),
        (9, ALL_NOTES_OFF, 0),
    ]
    # Note-offs come before the controllers: a synth that ignores CC 123 still stops each note.
    assert [m.type for m in released[: len(note_offs)]] == ["note_off"] * len(note_offs)


def test_a_note_on_with_velocity_zero_is_a_note_off() -> None:
    sounding = SoundingNotes()
    sounding.observe(on(60))
    sounding.observe(on(60, velocity=0))
    assert sounding.notes == frozenset()


def test_a_note_struck_twice_is_released_once_and_channels_are_separate() -> None:
    sounding = SoundingNotes()
    sounding.observe(on(60))
    sounding.observe(on(60, velocity=30))
    sounding.observe(on(60, channel=1))
    sounding.observe(off(60, channel=1))
    assert [(m.channel, m.note) for m in sounding.release() if m.type == "note_off"] == [(0, 60)]


def test_after_a_release_nothing_is_left_to_release() -> None:
    sounding = SoundingNotes()
    sounding.observe(on(60))
    assert sounding.release()
    assert sounding.release() == []
    sounding.observe(mido.Message("clock"))  # system messages have no channel: nothing to do
    assert sounding.release() == []


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 127), st.integers(0, 127)),
        max_size=200,
    )
)
def test_the_release_silences_exactly_what_a_synth_would_still_sound(
    played: list[tuple[bool, int, int, int]],
) -> None:
    sounding = SoundingNotes()
    synth: set[tuple[int, int]] = set()  # a simple synth: a note sounds from note-on to note-off
    for is_on, channel, note, velocity in played:
        message = on(note, channel, velocity) if is_on else off(note, channel)
        sounding.observe(message)
        if is_on and velocity > 0:
            synth.add((channel, note))
        else:
            synth.discard((channel, note))
    for message in sounding.release():
        if message.type == "note_off":
            synth.remove((message.channel, message.note))  # KeyError: a note-off for nothing
    assert synth == set()
