"""The speaker side: the remote track's frames, resampled to mono, land in the playout buffer,
and detaching ends the receiving task cleanly. The music path's ``TappedSpeaker``: the track's
receiver is tapped, its packets land in the jitter buffer, and its end empties it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from device.audio.format import SAMPLE_RATE
from device.audio.jitter import JitterBuffer, OpusCodec
from device.audio.opus import OpusEncoder
from device.audio.playout import PlayoutBuffer
from device.audio.selftest import level_at
from device.audio.speaker import Speaker, TappedSpeaker
from device.errors import AudioError
from device.net.ice import rtc_configuration
from device.net.rtp_tap import CODECS_ATTRIBUTE, JITTER_BUFFER_ATTRIBUTE, RtpTap
from tests.audio_support import SilentForeverTrack, ToneTrack, until

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


async def test_a_remote_track_that_ends_ends_the_task_and_takes_its_leftovers() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    track = ToneTrack(1000, 0.5, paced=False, frames=20)
    speaker.attach(track)
    await until(lambda: not speaker.attached, "not speaker.attached")
    assert speaker.frames_received == 20
    assert playout.fill == 0  # nothing stale plays when the next track arrives


async def test_received_audio_waits_in_the_playout_buffer_for_the_card() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    track = ToneTrack(1000, 0.5, paced=False)
    speaker.attach(track)
    await until(lambda: playout.fill >= SAMPLE_RATE // 2, "playout.fill >= SAMPLE_RATE // 2")
    await speaker.detach()
    assert not speaker.attached
    assert playout.fill == 0


async def test_the_resampled_samples_carry_the_tone_at_its_level() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    speaker.attach(ToneTrack(1000, 0.5, paced=False))
    await until(lambda: playout.fill >= 9600, "playout.fill >= 9600")
    samples = np.concatenate([playout.pull() for _ in range(20)]).astype(np.float64) / 32768
    await speaker.detach()
    # A 0.5 sine: RMS 0.354. Mono from identical channels keeps the level.
    assert abs(level_at(samples, 1000) - 0.354) < 0.02
    assert abs(level_at(samples, 1500)) < 0.01


async def test_detaching_a_track_that_never_delivers_ends_its_task() -> None:
    speaker = Speaker(PlayoutBuffer())
    speaker.attach(SilentForeverTrack())
    await asyncio.sleep(0)
    assert speaker.attached
    await asyncio.wait_for(speaker.detach(), timeout=5)
    assert not speaker.attached
    await speaker.detach()  # twice is harmless


async def test_attaching_a_new_track_replaces_the_old_one() -> None:
    playout = PlayoutBuffer(maximum=SAMPLE_RATE)
    speaker = Speaker(playout)
    first = ToneTrack(500, 0.5)
    speaker.attach(first)
    await until(lambda: first.sent > 0, "first.sent > 0")
    second = ToneTrack(1000, 0.5, paced=False)
    speaker.attach(second)
    await until(lambda: playout.fill >= 9600, "playout.fill >= 9600")
    samples = np.concatenate([playout.pull() for _ in range(20)]).astype(np.float64) / 32768
    assert level_at(samples, 1000) > 0.3
    assert level_at(samples, 500) < 0.01
    sent_by_first = first.sent
    await asyncio.sleep(0.1)
    assert first.sent == sent_by_first  # nobody asks the old track any more
    await speaker.detach()


# --- the music path ---------------------------------------------------------------------------


@pytest.fixture
async def receivers() -> AsyncIterator[list[RTCRtpReceiver]]:
    """Audio receivers of a peer connection that never connects, Opus negotiated as if it had."""
    pc = RTCPeerConnection(rtc_configuration([]))
    made = []
    for _ in range(2):
        receiver = pc.addTransceiver("audio").receiver
        getattr(receiver, CODECS_ATTRIBUTE)[OPUS.payloadType] = OPUS
        made.append(receiver)
    yield made
    await pc.close()


class Sender:
    """10 ms Opus packets of a tone, as the other box sends them."""

    def __init__(self) -> None:
        self._encoder = OpusEncoder()
        self._count = 0

    async def send(self, receiver: RTCRtpReceiver, packets: int) -> None:
        for _ in range(packets):
            t = (np.arange(480) + self._count * 480) / SAMPLE_RATE
            tone = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
            packet = RtpPacket(
                payload_type=OPUS.payloadType,
                sequence_number=self._count % 65_536,
                timestamp=7_000 + self._count * 480,
                ssrc=99,
                payload=self._encoder.encode(tone),
            )
            self._count += 1
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)


async def test_a_tapped_receiver_s_packets_reach_the_jitter_buffer_and_play(
    receivers: list[RTCRtpReceiver],
) -> None:
    jitter = JitterBuffer(OpusCodec)
    speaker = TappedSpeaker(jitter)
    speaker.attach(SilentForeverTrack(), receivers[0])
    assert speaker.attached
    sender, blocks = Sender(), []
    for _ in range(40):  # a packet, then the card takes a block
        await sender.send(receivers[0], 1)
        blocks.append(jitter.pull())
    assert speaker.packets == 40
    assert jitter.stats().packets == 40
    samples = np.concatenate(blocks[-20:]).astype(np.float64) / 32768
    assert level_at(samples, 1000) == pytest.approx(0.354, abs=0.03)
    await speaker.detach()
    assert not speaker.attached
    assert jitter.stats().fill_ms == 0


async def test_after_detaching_nothing_more_reaches_the_buffer(
    receivers: list[RTCRtpReceiver],
) -> None:
    jitter = JitterBuffer(OpusCodec)
    speaker = TappedSpeaker(jitter)
    speaker.attach(SilentForeverTrack(), receivers[0])
    tap = getattr(receivers[0], JITTER_BUFFER_ATTRIBUTE)
    await speaker.detach()
    await Sender().send(receivers[0], 5)
    assert isinstance(tap, RtpTap) and tap.packets == 0
    assert jitter.stats().packets == 0


async def test_a_new_receiver_replaces_the_old_one(receivers: list[RTCRtpReceiver]) -> None:
    jitter = JitterBuffer(OpusCodec)
    speaker = TappedSpeaker(jitter)
    speaker.attach(SilentForeverTrack(), receivers[0])
    speaker.attach(SilentForeverTrack(), receivers[1])
    await Sender().send(receivers[0], 5)  # the old connection, still delivering
    assert jitter.stats().packets == 0
    await Sender().send(receivers[1], 5)
    assert jitter.stats().packets == 5
    await speaker.detach()


async def test_when_the_remote_track_ends_the_buffer_forgets_the_stream(
    receivers: list[RTCRtpReceiver],
) -> None:
    jitter = JitterBuffer(OpusCodec)
    speaker = TappedSpeaker(jitter)
    track = ToneTrack(1000, 0.5, paced=False, frames=0)  # ends at its first recv()
    speaker.attach(track, receivers[0])
    await until(lambda: not speaker.attached, "not speaker.attached")
    await Sender().send(receivers[0], 5)
    assert jitter.stats().packets == 0  # the tap went with the track


async def test_a_receiver_that_cannot_be_tapped_changes_nothing(
    receivers: list[RTCRtpReceiver],
) -> None:
    jitter = JitterBuffer(OpusCodec)
    speaker = TappedSpeaker(jitter)
    speaker.attach(SilentForeverTrack(), receivers[0])
    delattr(receivers[1], JITTER_BUFFER_ATTRIBUTE)
    with pytest.raises(AudioError):
        speaker.attach(SilentForeverTrack(), receivers[1])
    await Sender().send(receivers[0], 5)  # still the first one playing
    assert jitter.stats().packets == 5
    await speaker.detach()
