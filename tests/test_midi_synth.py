"""The built-in General MIDI synth: Debian's FluidSynth and GM SoundFont, rendered as the speaker
renders it, alone, through the mixer, and through the real engine on the virtual sound card."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import mido
import numpy as np
import numpy.typing as npt
import pytest

from device.audio.engine import AudioEngine
from device.audio.format import BLOCK_FRAMES, SAMPLE_RATE
from device.audio.mixer import Mixer
from device.audio.selftest import level_at
from device.audio.soundcard import sounddevice_card
from device.midi.errors import MidiError
from device.midi.sounding import SoundingNotes
from device.midi.synth import FluidSynth
from tests.audio_support import until
from tests.pipewire import Box, PipeWire, pipewire_fixture  # noqa: F401

LOAD_WAIT = 30.0  # a failsafe for loading the SoundFont on a busy machine, never a measurement
A4 = 69
STRINGS = 48  # GM program 49, String Ensemble 1: sustains for as long as the key is held


@pytest.fixture
def synth() -> Iterator[FluidSynth]:
    made = FluidSynth()
    try:
        assert made.wait_loaded(LOAD_WAIT), "the GM SoundFont did not load"
        yield made
    finally:
        made.close()


def play(synth: FluidSynth, seconds: float) -> npt.NDArray[np.float32]:
    """Render ``seconds`` in the sound card's 10 ms blocks, as the speaker pulls them."""
    blocks = round(seconds * SAMPLE_RATE / BLOCK_FRAMES)
    return np.concatenate([synth.render(BLOCK_FRAMES) for _ in range(blocks)])


def rms(samples: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def loudest_hz(samples: npt.NDArray[np.floating]) -> float:
    """The strongest frequency from 50 Hz to 5 kHz (to 1 Hz over a second of samples)."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    hz = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    band = (hz >= 50) & (hz <= 5000)
    return float(hz[band][np.argmax(spectrum[band])])


def at(samples: npt.NDArray[np.floating], hz: float) -> float:
    return level_at(samples.astype(np.float64), hz)


def test_a4_on_the_gm_piano_sounds_at_440_hz(synth: FluidSynth) -> None:
    synth.send(mido.Message("program_change", program=0))  # Acoustic Grand Piano
    synth.send(mido.Message("note_on", note=A4, velocity=80))
    sound = play(synth, 1.0)
    assert abs(loudest_hz(sound) - 440) <= 2
    # The neighbouring semitones (G#4, A#4) are far below the note itself.
    assert at(sound, 440) > 10 * max(at(sound, 415.3), at(sound, 466.2))
    assert 0.003 < rms(sound) < 0.5  # clearly audible, and well clear of full scale


def test_a_released_note_falls_silent_while_a_held_one_sounds_on() -> None:
    held, released = FluidSynth(), FluidSynth()
    try:
        for made in (held, released):
            assert made.wait_loaded(LOAD_WAIT)
            made.send(mido.Message("note_on", note=A4, velocity=80))
        assert rms(play(held, 0.5)) == pytest.approx(rms(play(released, 0.5)), rel=0.01)
        released.send(mido.Message("note_off", note=A4))
        still = play(held, 1.0)[SAMPLE_RATE // 2 :]
        after = play(released, 1.0)[SAMPLE_RATE // 2 :]
        assert at(still, 440) > 0.001  # the piano rings on while the key is down
        assert rms(after) < rms(still) / 100  # 40 dB lower: the release has run its course
    finally:
        held.close()
        released.close()


def test_all_notes_off_silences_every_channel(synth: FluidSynth) -> None:
    synth.send(mido.Message("program_change", channel=1, program=STRINGS))
    for channel, note in ((0, 60), (0, 64), (1, 67), (1, A4)):
        synth.send(mido.Message("note_on", channel=channel, note=note, velocity=100))
    assert rms(play(synth, 0.5)) > 0.01
    for channel in (0, 1):
        synth.send(mido.Message("control_change", channel=channel, control=123, value=0))
    # The strings' release and the reverb's tail take about two seconds to die away.
    tail = play(synth, 3.0)[2 * SAMPLE_RATE :]
    assert np.abs(tail).max() < 1e-5  # below -100 dBFS: nothing is left sounding


def test_sounding_notes_release_stops_notes_held_by_the_sustain_pedal(synth: FluidSynth) -> None:
    # All-notes-off alone leaves pedalled notes ringing (as on a real synth): the release that the
    # link sends when it drops lifts the pedal first.
    sounding = SoundingNotes()
    for message in (
        mido.Message("program_change", program=STRINGS),
        mido.Message("control_change", control=64, value=127),
        mido.Message("note_on", note=A4, velocity=100),
    ):
        sounding.observe(message)
        synth.send(message)
    synth.send(mido.Message("control_change", control=123, value=0))
    pedalled = play(synth, 1.0)
    assert at(pedalled[SAMPLE_RATE // 2 :], 440) > 0.001
    for message in sounding.release():
        synth.send(message)
    assert np.abs(play(synth, 3.0)[2 * SAMPLE_RATE :]).max() < 1e-5


def test_messages_a_synth_ignores_are_dropped_quietly(synth: FluidSynth) -> None:
    synth.send(mido.Message("clock"))
    synth.send(mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01]))
    synth.send(mido.Message("pitchwheel", pitch=8191))
    synth.send(mido.Message("aftertouch", value=90))
    synth.send(mido.Message("note_on", note=A4, velocity=80))
    synth.send(mido.Message("polytouch", note=A4, value=90))
    sound = play(synth, 1.0)
    # Bent up two semitones (GM's default bend range): B4.
    assert abs(loudest_hz(sound) - 493.9) <= 3
    assert synth.dropped == 0


def test_a_missing_soundfont_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(MidiError, match=r"no SoundFont at .*missing\.sf2.*fluid-soundfont-gm"):
        FluidSynth(tmp_path / "missing.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"not a soundfont at all")
    with pytest.raises(MidiError, match="not a SoundFont 2 file"):
        FluidSynth(junk)
    with pytest.raises(ValueError, match="gain"):
        FluidSynth(gain=0.0)


def broken_soundfont(tmp_path: Path) -> Path:
    """A file that looks like a SoundFont from outside but that FluidSynth cannot load."""
    path = tmp_path / "broken.sf2"
    path.write_bytes(b"RIFF" + (100).to_bytes(4, "little") + b"sfbk" + bytes(100))
    return path


def test_a_synth_that_fails_is_taken_off_the_speaker_which_plays_on(tmp_path: Path) -> None:
    broken = FluidSynth(broken_soundfont(tmp_path))
    try:
        assert not broken.wait_loaded(LOAD_WAIT)
        with pytest.raises(MidiError, match="could not load the SoundFont"):
            broken.render(BLOCK_FRAMES)
        mixer = Mixer(level=10)
        mixer.attach(broken)
        call = np.full(BLOCK_FRAMES, 8192, dtype=np.int16)  # the call goes on: a quarter scale
        out = np.zeros(BLOCK_FRAMES, dtype=np.float32)
        mixer.render(call, out)
        assert mixer.source is None
        np.testing.assert_allclose(out, 0.25)
    finally:
        broken.close()


def test_the_mixer_plays_the_synth_at_the_call_s_volume(synth: FluidSynth) -> None:
    mixer = Mixer(level=10)
    mixer.attach(synth)
    silence = np.zeros(BLOCK_FRAMES, dtype=np.int16)
    synth.send(mido.Message("note_on", note=A4, velocity=80))

    def through_mixer(seconds: float) -> npt.NDArray[np.float32]:
        blocks = []
        for _ in range(round(seconds * SAMPLE_RATE / BLOCK_FRAMES)):
            out = np.zeros(BLOCK_FRAMES, dtype=np.float32)
            mixer.render(silence, out)
            blocks.append(out)
        return np.concatenate(blocks)

    loud = through_mixer(1.0)
    assert abs(loudest_hz(loud) - 440) <= 2
    mixer.set_volume(0)  # the call silenced: the other side's instruments with it
    assert not through_mixer(0.1).any()
    mixer.set_volume(10)
    mixer.detach(synth)
    assert not through_mixer(0.1).any()
    assert mixer.source is None


_boxes = iter(range(1_000_000))


@pytest.fixture
def box(pipewire: PipeWire) -> Iterator[Box]:
    with pipewire.box(f"synthbox{next(_boxes)}") as made:
        yield made


@pytest.fixture
async def engine(box: Box) -> AsyncIterator[AudioEngine]:
    running = AudioEngine(box.settings, sounddevice_card, lambda _: None, lambda: None)
    await running.start()
    try:
        await until(lambda: running.cards_description().running, "the engine's card running")
        yield running
    finally:
        await running.close()


async def test_a_note_sent_to_the_engine_s_synth_comes_out_of_the_speaker(
    engine: AudioEngine, box: Box
) -> None:
    engine.set_volume(10)
    synth = engine.midi_synth()
    assert engine.midi_synth() is synth  # one synth per box, made once
    await until(lambda: synth.loaded, "the GM SoundFont loaded")
    synth.send(mido.Message("program_change", program=0))  # Acoustic Grand Piano
    synth.send(mido.Message("note_on", note=A4, velocity=100))
    played = (await box.record_speaker(seconds=1.0)).astype(np.float64) / 32768
    # The recording may begin before the note (the card's buffers, a busy machine), which widens
    # the spectrum's peak: 4 Hz is still a sixth of the semitone to either neighbour.
    assert abs(loudest_hz(played) - 440) <= 4
    assert at(played, 440) > 5 * max(at(played, 415.3), at(played, 466.2))
    assert at(played, 440) > 0.005

    engine.detach_synth()
    after = (await box.record_speaker(seconds=0.5)).astype(np.float64) / 32768
    assert at(after, 440) < 0.0005
