"""The audio engine on the fake card: tracks, cues, volume and mute, and a card that fails and
comes back — reported once each way, on the event loop. Most of it on the "stock" profile; the
"music" profile's receive path with two real aiortc peers and libopus at the end."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError

from device.audio.engine import AudioEngine
from device.audio.fake_card import FakeCard, FakeCardFactory
from device.audio.format import BLOCK_FRAMES, FRAME_SAMPLES, SAMPLE_RATE
from device.audio.jitter import MAXIMUM_MS
from device.audio.mixer import volume_gain
from device.audio.selftest import level_at
from device.lifecycle.states import Cue
from device.net.ice import rtc_configuration
from device.net.rtp_tap import JITTER_BUFFER_ATTRIBUTE, RtpTap
from device.settings import AudioSettings
from tests.audio_support import SilentForeverTrack, SteppedToneTrack, ToneTrack, until
from tests.net_support import negotiate_on_loopback

SETTINGS = AudioSettings(input="Jabra", output="Jabra", profile="stock")
MUSIC = AudioSettings(input="Jabra", output="Jabra", profile="music")


class Reports:
    """What the engine told the agent, and on which thread."""

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


@pytest.fixture
def factory() -> FakeCardFactory:
    return FakeCardFactory()


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
async def engine(factory: FakeCardFactory, reports: Reports) -> AsyncIterator[AudioEngine]:
    engine = AudioEngine(
        SETTINGS,
        factory,
        reports.on_failed,
        reports.on_restored,
        retry_seconds=0.02,
        check_seconds=0.005,
    )
    await engine.start()
    yield engine
    await engine.close()


def block(value: int) -> np.ndarray:
    return np.full(BLOCK_FRAMES, value, dtype=np.int16)


async def play(card: FakeCard, track: SteppedToneTrack, frames: int) -> np.ndarray:
    """Let the remote track deliver ``frames`` 20 ms frames, the card playing as they come."""
    out = []
    for _ in range(frames):
        before = track.sent
        track.allow()
        # Once the track has handed it out, the frame is in the playout buffer.
        await until(lambda: track.sent > before, "the next remote frame")  # noqa: B023
        out += [card.pull_output(), card.pull_output()]
    return np.concatenate(out).astype(np.float64)


def run_card(factory: FakeCardFactory, blocks: int = 1) -> None:
    for _ in range(blocks):
        factory.card.push_input(block(0))
        factory.card.pull_output()


async def test_every_microphone_track_gets_the_card_s_audio(
    engine: AudioEngine, factory: FakeCardFactory
) -> None:
    engine.set_sending(True)
    first, second = engine.new_microphone_track(), engine.new_microphone_track()
    for n in range(2):
        factory.card.push_input(block(1000 + n))
    a, b = await first.recv(), await second.recv()
    expected = np.concatenate([block(1000), block(1001)])
    assert np.array_equal(a.to_ndarray().reshape(-1), expected)
    assert np.array_equal(b.to_ndarray().reshape(-1), expected)

    first.stop()  # its peer connection closed
    factory.card.push_input(block(7))
    factory.card.push_input(block(7))
    assert (await second.recv()).pts == FRAME_SAMPLES
    with pytest.raises(MediaStreamError):
        await first.recv()


async def test_off_air_every_track_sends_silence_including_new_ones(
    engine: AudioEngine, factory: FakeCardFactory
) -> None:
    assert not engine.sending
    early = engine.new_microphone_track()
    engine.set_sending(True)
    late_track_before = engine.new_microphone_track()
    engine.set_sending(False)
    late = engine.new_microphone_track()
    for _ in range(2):
        factory.card.push_input(block(9000))
    for track in (early, late_track_before, late):
        assert not (await track.recv()).to_ndarray().any()
    engine.set_sending(True)
    for _ in range(2):
        factory.card.push_input(block(9000))
    for track in (early, late_track_before, late):
        assert np.all((await track.recv()).to_ndarray() == 9000)


async def test_remote_audio_plays_at_the_volume_with_cues_on_top(
    engine: AudioEngine, factory: FakeCardFactory
) -> None:
    engine.set_volume(10)
    track = SteppedToneTrack(1000, 0.5)
    engine.play_remote(track)
    card = factory.card
    track.allow(2)  # the playout buffer's target fill, before the card starts taking
    await until(lambda: track.sent == 2, "track.sent == 2")
    loud = await play(card, track, 10)
    assert level_at(loud, 1000) == pytest.approx(0.354, abs=0.01)

    engine.set_volume(4)
    quiet = await play(card, track, 10)
    assert level_at(quiet, 1000) == pytest.approx(0.354 * volume_gain(4), rel=0.03)

    engine.play_cue(Cue.REACTION)  # an A (880 Hz) bell over the call
    with_cue = await play(card, track, 10)
    assert level_at(with_cue, 880) > 0.005
    assert level_at(with_cue, 1000) == pytest.approx(0.354 * volume_gain(4), rel=0.03)
    assert engine.cards_description().playout.underruns == 0

    await engine.stop_remote()
    engine.play_cue(Cue.SENT)
    assert card.pull_output().any()  # cues play without a call too
    for _ in range(100):  # the rest of the bell and the tick
        card.pull_output()
    assert not card.pull_output().any()


async def test_a_failing_card_is_reported_once_then_reopened_and_restored(
    engine: AudioEngine, factory: FakeCardFactory, reports: Reports
) -> None:
    run_card(factory)
    await until(
        lambda: engine.levels().input_dbfs is not None, "engine.levels().input_dbfs is not None"
    )
    old = factory.card
    factory.unplugged = True
    old.fail("the microphone (Jabra) stopped: the sound card was unplugged or failed")
    old.fail("the speaker (Jabra) stopped: the sound card was unplugged or failed")
    # Retrying, while it is still missing.
    await until(lambda: factory.attempts >= 3, "factory.attempts >= 3")
    assert reports.failed == [
        "the microphone (Jabra) stopped: the sound card was unplugged or failed"
    ]
    assert not old.running
    assert engine.levels().input_dbfs is None
    description = engine.cards_description()
    assert not description.running
    assert description.problem is not None and "unplugged" in description.problem

    factory.unplugged = False
    await until(lambda: len(factory.cards) == 2, "len(factory.cards) == 2")
    assert reports.restored == 0  # opened is not yet working
    run_card(factory)
    await until(lambda: reports.restored == 1, "reports.restored == 1")
    assert reports.failed == [
        "the microphone (Jabra) stopped: the sound card was unplugged or failed"
    ]
    assert reports.threads == {threading.get_ident()}
    assert engine.cards_description().running
    assert engine.cards_description().problem is None


async def test_a_card_missing_at_start_is_reported_and_picked_up_later(
    factory: FakeCardFactory, reports: Reports
) -> None:
    factory.unplugged = True
    engine = AudioEngine(
        SETTINGS, factory, reports.on_failed, reports.on_restored, retry_seconds=0.02,
        check_seconds=0.005,
    )  # fmt: skip
    try:
        await engine.start()
        assert reports.failed == [
            "no microphone named 'Jabra' — found: default; "
            "set audio.input (TWM_DEVICE_AUDIO__INPUT)"
        ]
        factory.unplugged = False
        await until(lambda: bool(factory.cards), "bool(factory.cards)")
        run_card(factory)
        await until(lambda: reports.restored == 1, "reports.restored == 1")
        assert len(reports.failed) == 1
    finally:
        await engine.close()


async def test_callbacks_that_stop_are_a_failure_too(
    engine: AudioEngine, factory: FakeCardFactory, reports: Reports
) -> None:
    run_card(factory)
    factory.card.problem = "the microphone (Jabra) stopped: was the sound card unplugged?"
    await until(lambda: bool(reports.failed), "bool(reports.failed)")
    assert reports.failed == ["the microphone (Jabra) stopped: was the sound card unplugged?"]
    await until(lambda: len(factory.cards) == 2, "len(factory.cards) == 2")
    run_card(factory)
    await until(lambda: reports.restored == 1, "reports.restored == 1")


async def test_a_reopened_card_that_never_delivers_is_not_called_restored(
    engine: AudioEngine, factory: FakeCardFactory, reports: Reports
) -> None:
    factory.card.fail("gone")
    await until(lambda: len(factory.cards) == 2, "len(factory.cards) == 2")
    factory.card.problem = "the microphone (Jabra) stopped: was the sound card unplugged?"
    # Given up on, and tried again.
    await until(lambda: len(factory.cards) == 3, "len(factory.cards) == 3")
    assert reports.restored == 0
    assert reports.failed == ["gone"]
    run_card(factory)
    await until(lambda: reports.restored == 1, "reports.restored == 1")


async def test_the_old_card_s_late_callbacks_are_ignored(
    engine: AudioEngine, factory: FakeCardFactory, reports: Reports
) -> None:
    engine.set_sending(True)
    track = engine.new_microphone_track()
    old = factory.card
    handler = old.handler
    assert handler is not None
    old.fail("gone")
    await until(lambda: len(factory.cards) == 2, "len(factory.cards) == 2")
    handler.on_input(block(5000))  # a block that was still on its way
    handler.on_input(block(5000))
    handler.on_error("gone again")
    factory.card.push_input(block(42))
    factory.card.push_input(block(42))
    frame = await track.recv()
    assert np.all(frame.to_ndarray() == 42)
    assert reports.failed == ["gone"]


async def test_levels_show_what_the_microphone_hears_and_the_speaker_plays(
    engine: AudioEngine, factory: FakeCardFactory
) -> None:
    assert engine.levels().input_dbfs is None  # not delivering yet
    engine.set_volume(10)
    track = SteppedToneTrack(1000, 0.5)
    engine.play_remote(track)
    track.allow(2)
    await until(lambda: track.sent == 2, "track.sent == 2")
    for _ in range(100):
        factory.card.push_input(block(3277))  # -20 dBFS
        factory.card.push_input(block(3277))
        await play(factory.card, track, 1)
    levels = engine.levels()
    assert levels.input_dbfs == pytest.approx(-20, abs=0.5)
    assert levels.output_dbfs == pytest.approx(-9, abs=0.5)  # a 0.5 sine: RMS -9 dBFS
    description = engine.cards_description()
    assert (description.input, description.output) == ("Jabra", "Jabra")


async def test_close_ends_the_tracks_and_releases_the_card(
    factory: FakeCardFactory, reports: Reports
) -> None:
    engine = AudioEngine(SETTINGS, factory, reports.on_failed, reports.on_restored)
    await engine.start()
    track = engine.new_microphone_track()
    engine.play_remote(ToneTrack(440, 0.1))
    await engine.close()
    assert not factory.card.running
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert reports.failed == []


# --- the music profile -----------------------------------------------------------------------


@pytest.fixture
async def music_engine(factory: FakeCardFactory, reports: Reports) -> AsyncIterator[AudioEngine]:
    engine = AudioEngine(MUSIC, factory, reports.on_failed, reports.on_restored)
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture
async def receiver() -> AsyncIterator[RTCRtpReceiver]:
    """An audio receiver of a peer connection that never connects."""
    pc = RTCPeerConnection(rtc_configuration([]))
    yield pc.addTransceiver("audio").receiver
    await pc.close()


async def test_music_microphone_tracks_send_ten_ms_opus_packets(
    music_engine: AudioEngine, factory: FakeCardFactory
) -> None:
    music_engine.set_sending(True)
    track = music_engine.new_microphone_track()
    factory.card.push_input(block(1000))
    sent = await track.recv()
    assert isinstance(sent, av.Packet)
    assert sent.pts == 0 and bytes(sent)


async def test_a_track_without_a_receiver_plays_the_stock_way_on_the_music_profile(
    music_engine: AudioEngine, factory: FakeCardFactory
) -> None:
    music_engine.set_volume(10)
    track = SteppedToneTrack(1000, 0.5)
    music_engine.play_remote(track)
    assert music_engine.cards_description().receive_path == "stock"
    track.allow(2)
    await until(lambda: track.sent == 2, "track.sent == 2")
    assert level_at(await play(factory.card, track, 10), 1000) == pytest.approx(0.354, abs=0.01)


async def test_the_stock_profile_leaves_aiortc_s_receiver_as_it_is(
    engine: AudioEngine, receiver: RTCRtpReceiver
) -> None:
    engine.play_remote(SilentForeverTrack(), receiver)
    assert type(getattr(receiver, JITTER_BUFFER_ATTRIBUTE)) is JitterBuffer
    description = engine.cards_description()
    assert description.receive_path == "stock" and description.jitter is None


async def test_music_falls_back_to_stock_when_aiortc_s_receiver_is_not_as_pinned(
    music_engine: AudioEngine, factory: FakeCardFactory, receiver: RTCRtpReceiver
) -> None:
    delattr(receiver, JITTER_BUFFER_ATTRIBUTE)  # as if an aiortc upgrade had moved it
    music_engine.set_volume(10)
    track = SteppedToneTrack(1000, 0.5)
    music_engine.play_remote(track, receiver)
    assert music_engine.cards_description().receive_path == "stock"
    track.allow(2)
    await until(lambda: track.sent == 2, "track.sent == 2")
    assert level_at(await play(factory.card, track, 10), 1000) == pytest.approx(0.354, abs=0.01)


async def test_the_paths_take_over_from_each_other_whichever_played_before(
    music_engine: AudioEngine, factory: FakeCardFactory, receiver: RTCRtpReceiver
) -> None:
    music_engine.set_volume(10)
    first = SteppedToneTrack(500, 0.5)
    music_engine.play_remote(first)  # stock: no receiver
    first.allow(3)
    await until(lambda: first.sent == 3, "first.sent == 3")

    music_engine.play_remote(SilentForeverTrack(), receiver)  # music takes over
    assert isinstance(getattr(receiver, JITTER_BUFFER_ATTRIBUTE), RtpTap)
    description = music_engine.cards_description()
    assert description.receive_path == "music"
    assert description.playout.fill == 0  # what the stock path held is gone
    assert not factory.card.pull_output().any()  # the music path, with nothing yet: silence
    first.allow(1)
    await asyncio.sleep(0.05)
    assert first.sent == 3  # nobody asks the stock track any more

    second = SteppedToneTrack(1000, 0.5)
    music_engine.play_remote(second)  # e.g. a test tone: the tap is closed, stock plays
    assert music_engine.cards_description().receive_path == "stock"
    second.allow(2)
    await until(lambda: second.sent == 2, "second.sent == 2")
    assert level_at(await play(factory.card, second, 5), 1000) == pytest.approx(0.354, abs=0.01)


class TwoRooms:
    """Two engines on fake cards joined by real aiortc peers on loopback: the test's 10 ms
    pump plays a tone into the sender's microphone and takes the receiver's speaker output."""

    def __init__(self, sender: AudioEngine, receiver: AudioEngine, cards: FakeCardFactory) -> None:
        self.sender, self.receiver = sender, receiver
        self.sender_card, self.receiver_card = cards.cards[0], cards.cards[1]
        self.heard: list[np.ndarray] = []
        self.remote: list[MediaStreamTrack] = []
        self._phase = 0

    async def pump(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += BLOCK_FRAMES / SAMPLE_RATE
            await asyncio.sleep(max(0.0, due - loop.time()))
            t = (np.arange(BLOCK_FRAMES) + self._phase) / SAMPLE_RATE
            self._phase += BLOCK_FRAMES
            tone = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
            self.sender_card.push_input(tone)
            self.receiver_card.push_input(block(0))
            self.heard.append(self.receiver_card.pull_output())
            self.sender_card.pull_output()


async def test_music_path_plays_a_real_peer_s_opus_through_the_jitter_buffer_at_low_delay(
    factory: FakeCardFactory, reports: Reports
) -> None:
    sender = AudioEngine(MUSIC, factory, reports.on_failed, reports.on_restored)
    receiver = AudioEngine(MUSIC, factory, reports.on_failed, reports.on_restored)
    await sender.start()
    await receiver.start()
    rooms = TwoRooms(sender, receiver, factory)
    receiver.set_volume(10)
    sender.set_sending(True)
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))

    @answerer.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tapped = next(t.receiver for t in answerer.getTransceivers() if t.receiver.track is track)
        rooms.remote.append(track)
        receiver.play_remote(track, tapped)

    pump = asyncio.get_running_loop().create_task(rooms.pump())
    try:
        offerer.addTrack(sender.new_microphone_track())
        await negotiate_on_loopback(offerer, answerer)

        def packets() -> int:
            jitter = receiver.cards_description().jitter
            return jitter.packets if jitter is not None else 0

        # Three seconds of 10 ms packets: the jitter measured, the initial allowance gone.
        await until(lambda: packets() >= 300, "300 packets in the jitter buffer")
        start = len(rooms.heard)
        await until(lambda: len(rooms.heard) >= start + 100, "one more second played")
        description = receiver.cards_description()
        stats = description.jitter
        assert description.receive_path == "music" and stats is not None
        played = np.concatenate(rooms.heard[start : start + 100]).astype(np.float64)
        # The tone, at its level (volume 10 is unity gain), through libopus and our buffer.
        assert level_at(played, 1000) == pytest.approx(0.354, abs=0.03)
        # Every packet went to our buffer; aiortc's decoder (the stock path) got nothing.
        assert stats.packets >= 300 and stats.invalid == 0
        assert description.playout.fill == 0
        # The delay is the buffer's own: frame + measured jitter + margin, never above the cap.
        assert stats.target_ms == pytest.approx(10 + stats.jitter_ms + 1, abs=0.01)
        assert stats.fill_ms <= MAXIMUM_MS
        assert stats.headroom_ms is not None

        # The connection closes: the remote track ends and the buffer forgets the stream.
        await offerer.close()
        await answerer.close()
        await until(lambda: rooms.remote[0].readyState == "ended", "the remote track to end")
        await until(lambda: _jitter_fill(receiver) == 0, "the jitter buffer to empty")
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await offerer.close()
        await answerer.close()
        await sender.close()
        await receiver.close()
    assert reports.failed == []


def _jitter_fill(engine: AudioEngine) -> float | None:
    jitter = engine.cards_description().jitter
    return jitter.fill_ms if jitter is not None else None
