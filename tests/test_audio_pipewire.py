"""The box's audio on a real (virtual) sound card: PipeWire null sinks reached through ALSA and
PortAudio by name, exactly as a box opens its USB speakerphone. See tests/pipewire.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import av
import numpy as np
import pytest

from device.audio.cards import Direction, list_cards, resolve
from device.audio.engine import AudioEngine
from device.audio.format import SAMPLE_RATE
from device.audio.opus import OpusDecoder
from device.audio.selftest import level_at, self_test
from device.audio.soundcard import sounddevice_card
from device.errors import AudioError
from device.lifecycle.states import Cue
from device.settings import AudioSettings
from tests.audio_support import ToneTrack, until
from tests.pipewire import Box, PipeWire, pipewire_fixture  # noqa: F401

WAIT = 20.0  # generous: only a failsafe, never a measurement


def sine(hz: float, seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def heard(samples: np.ndarray, hz: float) -> float:
    return level_at(samples.astype(np.float64) / 32768, hz)


class Reports:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.restored = 0
        self.threads: set[int] = set()

    def on_failed(self, message: str) -> None:
        self.threads.add(threading.get_ident())
        self.failed.append(message)

    def on_restored(self) -> None:
        self.threads.add(threading.get_ident())
        self.restored += 1


_boxes = iter(range(1_000_000))


@pytest.fixture
def box(pipewire: PipeWire) -> Iterator[Box]:
    with pipewire.box(f"box{next(_boxes)}") as made:
        yield made


@pytest.fixture
async def running(box: Box) -> AsyncIterator[tuple[AudioEngine, Reports]]:
    reports = Reports()
    engine = AudioEngine(box.settings, sounddevice_card, reports.on_failed, reports.on_restored)
    await engine.start()
    try:
        await until(
            lambda: engine.cards_description().running, "engine.cards_description().running"
        )
        yield engine, reports
    finally:
        await engine.close()


def test_the_box_s_endpoints_are_sound_cards_by_name(box: Box) -> None:
    cards = list_cards()
    assert resolve(box.mic.upper(), Direction.INPUT, cards).name == box.mic
    assert resolve(box.speaker, Direction.OUTPUT, cards).name == box.speaker
    with pytest.raises(AudioError) as caught:
        resolve("Jabra", Direction.INPUT, cards)
    assert box.mic in str(caught.value)
    assert "TWM_DEVICE_AUDIO__INPUT" in str(caught.value)


async def collect(track: object, frames: int) -> np.ndarray:
    """``frames`` frames of the track as samples (the music profile's Opus packets decoded)."""
    recv = track.recv  # type: ignore[attr-defined]
    decoder = OpusDecoder()
    out = []
    for _ in range(frames):
        frame = await asyncio.wait_for(recv(), timeout=WAIT)
        if isinstance(frame, av.Packet):
            out.append(decoder.decode(bytes(frame)))
        else:
            out.append(frame.to_ndarray().reshape(-1))
    decoder.close()
    return np.concatenate(out)


async def test_a_tone_in_the_room_reaches_the_microphone_track_only_while_sending(
    running: tuple[AudioEngine, Reports], box: Box
) -> None:
    engine, _ = running
    engine.set_sending(True)
    track = engine.new_microphone_track()
    playing = asyncio.ensure_future(box.play_into_room(sine(440, 1.5, 0.3)))
    captured = await collect(track, 100)  # 1 s of 10 ms music packets, on the card's clock
    await playing
    # 0.3 amplitude: RMS 0.21 (-13.5 dBFS) while it plays, for most of what was captured.
    assert heard(captured, 440) > 0.05
    assert heard(captured, 1000) < 0.005
    assert engine.levels().input_dbfs is not None

    engine.set_sending(False)
    await collect(track, 10)  # frames already queued before the mute
    playing = asyncio.ensure_future(box.play_into_room(sine(440, 1.0, 0.3)))
    muted = await collect(track, 60)
    await playing
    # Digital silence goes into the encoder: nothing of the room leaves the box. What comes out
    # of the decoder is the codec's own tail of the sound before the mute, fading to exact zero
    # within ~0.3 s: below -54 dBFS after the first 20 ms on an idle machine, a frame or two
    # later on a loaded one (more was queued when the mute came). The room's tone (0.3, about
    # -10 dBFS peak) would be 30 dB above the bound, and is not in it.
    assert np.abs(muted[960:]).max() <= 328  # -40 dBFS
    assert heard(muted, 440) < 0.001
    assert not muted[-4800:].any()


async def test_the_remote_track_and_the_cues_come_out_of_the_speaker(
    running: tuple[AudioEngine, Reports], box: Box
) -> None:
    engine, _ = running
    engine.set_volume(10)
    engine.play_remote(ToneTrack(1000, 0.3))
    await until(
        lambda: engine.cards_description().playout.fill > 0,
        "engine.cards_description().playout.fill > 0",
    )
    engine.play_cue(Cue.REACTION)
    played = await box.record_speaker(seconds=1.0)
    await engine.stop_remote()
    assert heard(played, 1000) > 0.1  # 0.3 at full volume: RMS 0.21
    assert heard(played, 880) > 0.002  # the ding, on top
    assert heard(played, 440) < 0.01

    after = await box.record_speaker(seconds=0.5)
    assert heard(after, 1000) < 0.001  # detached: the call audio stopped


async def test_the_card_vanishing_is_a_fault_and_its_return_a_recovery(
    running: tuple[AudioEngine, Reports], box: Box
) -> None:
    engine, reports = running
    engine.set_sending(True)
    track = engine.new_microphone_track()
    box.vanish()
    await until(lambda: bool(reports.failed), "bool(reports.failed)")
    assert len(reports.failed) == 1
    assert "microphone" in reports.failed[0] and box.mic in reports.failed[0]
    assert "unplugged" in reports.failed[0]
    assert not engine.cards_description().running
    assert engine.levels().input_dbfs is None
    assert reports.restored == 0

    box.restore()
    await until(lambda: reports.restored == 1, "reports.restored == 1")
    assert len(reports.failed) == 1
    assert reports.threads == {threading.get_ident()}  # told on the event loop, not a card thread
    assert engine.cards_description().running

    # The same track carries the room again.
    playing = asyncio.ensure_future(box.play_into_room(sine(440, 1.5, 0.3)))
    captured = await collect(track, 100)
    await playing
    assert heard(captured, 440) > 0.05


async def test_a_card_missing_at_start_is_reported_and_picked_up_when_it_appears(
    box: Box,
) -> None:
    box.vanish()
    reports = Reports()
    engine = AudioEngine(box.settings, sounddevice_card, reports.on_failed, reports.on_restored)
    await engine.start()
    try:
        await until(lambda: bool(reports.failed), "bool(reports.failed)")
        box.restore()
        await until(lambda: reports.restored == 1, "reports.restored == 1")
        assert len(reports.failed) == 1
    finally:
        await engine.close()


async def test_the_self_test_hears_its_own_speaker_through_the_room(box: Box) -> None:
    with box.hearing_own_speaker():
        result = await self_test(box.settings)
    assert result.heard_tone, result.summary()
    assert result.tone_dbfs > -30  # -15 dBFS played, a little lost on the way
    assert result.peak_dbfs > result.rms_dbfs
    assert (result.input_name, result.output_name) == (box.mic, box.speaker)


async def test_the_self_test_reports_a_microphone_that_hears_nothing(box: Box) -> None:
    result = await self_test(box.settings)
    assert not result.heard_tone
    assert result.rms_dbfs < -60


async def test_the_self_test_names_a_missing_card(pipewire: PipeWire) -> None:
    with pytest.raises(AudioError, match="no microphone named 'nowhere_mic'"):
        await self_test(AudioSettings(input="nowhere_mic", output="nowhere_speaker"))


async def test_two_boxes_in_one_process_leave_each_other_s_cards_alone(
    pipewire: PipeWire,
) -> None:
    # Both boxes exist before either opens its card: PortAudio cannot look again for new cards
    # while this process has a stream open (see device.audio.cards).
    with pipewire.box("pair_a") as box_a, pipewire.box("pair_b") as box_b:
        reports_a, reports_b = Reports(), Reports()
        engine_a = AudioEngine(
            box_a.settings, sounddevice_card, reports_a.on_failed, reports_a.on_restored
        )
        engine_b = AudioEngine(
            box_b.settings, sounddevice_card, reports_b.on_failed, reports_b.on_restored
        )
        await engine_a.start()
        await engine_b.start()  # looks for its card while A's streams are open
        try:
            await until(
                lambda: (
                    engine_a.cards_description().running and engine_b.cards_description().running
                ),
                "both boxes' cards running",
            )
            box_a.vanish()
            await until(lambda: reports_a.failed, "box A's card to fail")
            box_a.restore()
            await until(lambda: reports_a.restored == 1, "box A's card to come back")
            assert reports_b.failed == []
            assert engine_b.cards_description().running

            engine_b.set_sending(True)
            track_b = engine_b.new_microphone_track()
            playing = asyncio.ensure_future(box_b.play_into_room(sine(440, 1.0, 0.3)))
            captured = await collect(track_b, 75)
            await playing
            assert heard(captured, 440) > 0.05
        finally:
            await engine_a.close()
            await engine_b.close()
