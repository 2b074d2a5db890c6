"""The microphone track: 20 ms s16 frames (stock) or 10 ms Opus packets (music) on the card's
clock, silence when not sending, and a queue that never grows."""

from __future__ import annotations

import asyncio
import itertools

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.audio.format import (
    BLOCK_FRAMES,
    FRAME_SAMPLES,
    MUSIC_FRAME_SAMPLES,
    SAMPLE_RATE,
    TIME_BASE,
)
from device.audio.microphone import MUSIC_QUEUE_FRAMES, QUEUE_FRAMES, Microphone
from device.audio.opus import OpusDecoder, packet_samples
from device.net.ice import host_addresses
from device.net.sdp import tune_for_music


def ramp(start: int, count: int = BLOCK_FRAMES) -> np.ndarray:
    """Recognisable samples: a counter that wraps inside int16."""
    return (np.arange(start, start + count) % 30000).astype(np.int16)


async def test_blocks_become_20ms_s16_mono_frames_with_sample_pts() -> None:
    track = Microphone(sending=True)
    for n in range(4):
        track.feed(ramp(n * BLOCK_FRAMES))
    first, second = await track.recv(), await track.recv()
    for frame, pts in ((first, 0), (second, FRAME_SAMPLES)):
        assert frame.format.name == "s16"
        assert frame.layout.name == "mono"
        assert frame.sample_rate == SAMPLE_RATE
        assert frame.samples == FRAME_SAMPLES
        assert frame.time_base == TIME_BASE
        assert frame.pts == pts
    assert np.array_equal(first.to_ndarray().reshape(-1), ramp(0, FRAME_SAMPLES))
    assert np.array_equal(second.to_ndarray().reshape(-1), ramp(FRAME_SAMPLES, FRAME_SAMPLES))
    assert track.kind == "audio"


async def test_a_track_not_sending_carries_digital_silence_on_the_same_clock() -> None:
    track = Microphone()
    assert not track.sending  # never on air by accident
    loud = np.full(BLOCK_FRAMES, 12000, dtype=np.int16)
    track.feed(loud)
    track.feed(loud)
    silent = await track.recv()
    assert not silent.to_ndarray().any()
    track.set_sending(True)
    track.feed(loud)
    track.feed(loud)
    sent = await track.recv()
    assert sent.pts == FRAME_SAMPLES
    assert np.all(sent.to_ndarray() == 12000)
    track.feed(loud)
    track.set_sending(False)  # muted half way through a frame: from that block on, silence
    track.feed(loud)
    muted = (await track.recv()).to_ndarray().reshape(-1)
    assert np.all(muted[:BLOCK_FRAMES] == 12000)
    assert not muted[BLOCK_FRAMES:].any()


async def test_unread_frames_are_dropped_oldest_first_and_the_queue_never_grows() -> None:
    track = Microphone(sending=True)
    frames_fed = 3 * QUEUE_FRAMES
    for n in range(frames_fed * 2):
        track.feed(ramp(n * BLOCK_FRAMES))
    assert track.dropped == frames_fed - QUEUE_FRAMES
    received = [await track.recv() for _ in range(QUEUE_FRAMES)]
    assert [f.pts for f in received] == [
        (frames_fed - QUEUE_FRAMES + i) * FRAME_SAMPLES for i in range(QUEUE_FRAMES)
    ]
    # The newest sound, and the gap shows in the pts like lost packets would.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(track.recv(), timeout=0.05)


async def test_recv_waits_for_the_card_and_ends_when_the_track_stops() -> None:
    track = Microphone(sending=True)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done()
    track.feed(ramp(0, FRAME_SAMPLES))
    frame = await asyncio.wait_for(waiting, timeout=5)
    assert frame.pts == 0

    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, timeout=5)
    track.feed(ramp(0, FRAME_SAMPLES))  # fed after stop: ignored
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_stopping_a_track_tells_its_owner() -> None:
    stopped: list[Microphone] = []
    track = Microphone(on_stop=stopped.append)
    track.stop()
    track.stop()
    assert stopped == [track]


# The music profile: 10 ms frames, encoded here, handed to aiortc as Opus packets.


def tone_block(n: int, hz: float = 1000.0, amplitude: float = 8000.0) -> np.ndarray:
    """Block ``n`` of a continuous tone, as the card would deliver it."""
    t = (np.arange(BLOCK_FRAMES) + n * BLOCK_FRAMES) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


async def test_a_music_track_hands_aiortc_10ms_opus_packets_with_sample_pts() -> None:
    track = Microphone(sending=True, music=True)
    for n in range(50):
        track.feed(tone_block(n))
    packets = [await track.recv() for _ in range(MUSIC_QUEUE_FRAMES)]
    first_pts = (50 - MUSIC_QUEUE_FRAMES) * MUSIC_FRAME_SAMPLES  # 100 ms waited; older dropped
    decoder = OpusDecoder()
    decoded = []
    for n, packet in enumerate(packets):
        assert isinstance(packet, av.Packet)
        assert packet.pts == first_pts + n * MUSIC_FRAME_SAMPLES
        assert packet.time_base == TIME_BASE
        assert packet_samples(bytes(packet)) == MUSIC_FRAME_SAMPLES
        decoded.append(decoder.decode(bytes(packet)))
    assert track.dropped == 50 - MUSIC_QUEUE_FRAMES
    assert abs(peak_hz(np.concatenate(decoded[3:])) - 1000) < 20


async def test_a_muted_music_track_still_sends_packets_of_digital_silence() -> None:
    track = Microphone(music=True)
    decoder = OpusDecoder()
    for n in range(20):
        track.feed(tone_block(n, amplitude=12000))
        packet = await track.recv()
        assert len(bytes(packet)) > 100  # a full packet every 10 ms: no DTX gap
        assert not decoder.decode(bytes(packet)).any()
    track.set_sending(True)
    for n in range(20, 40):
        track.feed(tone_block(n, amplitude=12000))
        loud = decoder.decode(bytes(await track.recv()))
    assert np.abs(loud).max() > 6000


async def test_a_music_track_ends_like_a_stock_one() -> None:
    stopped: list[Microphone] = []
    track = Microphone(sending=True, music=True, on_stop=stopped.append)
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, timeout=5)
    track.feed(tone_block(0))
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert stopped == [track]


async def feed_in_real_time(track: Microphone, blocks: int) -> None:
    """The card's clock: one 10 ms tone block every 10 ms, on schedule."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(blocks):
        await asyncio.sleep(max(0.0, start + n * BLOCK_FRAMES / SAMPLE_RATE - loop.time()))
        track.feed(tone_block(n))


async def test_music_packets_cross_a_peer_connection_as_10ms_opus_and_keep_the_tone() -> None:
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    microphone = Microphone(music=True)  # silent at first: the rhythm must flow anyway
    sender.addTrack(microphone)
    arrived: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    receiver.on("track", arrived.set_result)
    feeding = asyncio.ensure_future(feed_in_real_time(microphone, 3000))
    try:
        with host_addresses(("127.0.0.1",)):  # aioice leaves loopback out otherwise
            await sender.setLocalDescription(await sender.createOffer())
            await receiver.setRemoteDescription(
                RTCSessionDescription(tune_for_music(sender.localDescription.sdp), "offer")
            )
            await receiver.setLocalDescription(await receiver.createAnswer())
            await sender.setRemoteDescription(
                RTCSessionDescription(tune_for_music(receiver.localDescription.sdp), "answer")
            )
        remote = await asyncio.wait_for(arrived, 20)
        silent = [await asyncio.wait_for(remote.recv(), 5) for _ in range(30)]
        microphone.set_sending(True)
        frames = [await asyncio.wait_for(remote.recv(), 5) for _ in range(200)]
        stats = await receiver.getTransceivers()[0].receiver.getStats()
    finally:
        feeding.cancel()
        await asyncio.gather(sender.close(), receiver.close())
    # aiortc's decoder gives one frame per RTP packet: 480 samples each means 10 ms packets.
    assert {f.samples for f in silent + frames} == {MUSIC_FRAME_SAMPLES}
    steady = frames[-100:]
    assert [b.pts - a.pts for a, b in itertools.pairwise(steady)] == [MUSIC_FRAME_SAMPLES] * 99
    inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
    assert inbound[0].packetsReceived >= len(silent) + len(frames)
    assert all(np.abs(f.to_ndarray()).max() < 50 for f in silent[5:])
    # Stock aiortc decodes to interleaved stereo; one channel is the tone.
    heard = np.concatenate([f.to_ndarray().reshape(-1)[::2] for f in steady])
    assert abs(peak_hz(heard) - 1000) < 10
    level_db = 20 * np.log10(np.sqrt(np.mean(heard.astype(float) ** 2)) / (8000 / np.sqrt(2)))
    assert abs(level_db) < 1
