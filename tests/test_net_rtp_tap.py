"""The RTP tap, and pins of the aiortc receive-side internals it stands on. They fail if an
aiortc upgrade changes them; then re-read aiortc/rtcrtpreceiver.py (``__init__``,
``_handle_rtp_packet``) and aiortc/rtcpeerconnection.py (when "track" is emitted) before moving
the pin (device/net/rtp_tap.py)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiortc
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from device.audio.opus import OpusEncoder, packet_samples
from device.errors import AudioError
from device.net.ice import rtc_configuration
from device.net.rtp_tap import (
    AIORTC_VERSION,
    CODECS_ATTRIBUTE,
    JITTER_BUFFER_ATTRIBUTE,
    RtpTap,
    tap_receiver,
)
from tests.audio_support import ToneTrack
from tests.net_support import eventually, negotiate_on_loopback

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)
PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)


@dataclass
class Sink:
    """Where a tap's packets land: (sequence, timestamp, payload, arrival)."""

    packets: list[tuple[int, int, bytes, float]] = field(default_factory=list)

    def __call__(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> None:
        self.packets.append((sequence, timestamp, payload, arrival))


def unstarted_transport() -> RTCDtlsTransport:
    """A real DTLS transport that never starts (nothing is gathered, nothing is sent)."""
    gatherer = RTCIceGatherer(iceServers=[])
    return RTCDtlsTransport(RTCIceTransport(gatherer), [RTCCertificate.generateCertificate()])


@pytest.fixture
async def receiver() -> AsyncIterator[RTCRtpReceiver]:
    transport = unstarted_transport()
    yield RTCRtpReceiver("audio", transport)
    await transport.stop()


def opus_packets(count: int, *, payload_type: int = 96) -> list[RtpPacket]:
    encoder = OpusEncoder()
    return [
        RtpPacket(
            payload_type=payload_type,
            sequence_number=65_530 + k,  # wraps: the tap hands numbers over as they are
            timestamp=4_000_000_000 + 480 * k,
            ssrc=1234,
            payload=encoder.encode(np.zeros(480, dtype=np.int16)),
        )
        for k in range(count)
    ]


# --- pins --------------------------------------------------------------------------------------


def test_aiortc_is_the_version_these_pins_were_read_from() -> None:
    assert aiortc.__version__ == AIORTC_VERSION == "1.16.0"


def test_an_audio_receiver_holds_a_four_packet_jitter_buffer_where_the_tap_goes(
    receiver: RTCRtpReceiver,
) -> None:
    stock = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    assert type(stock) is JitterBuffer
    assert stock.capacity == 16
    assert stock._prefetch == 4
    assert list(inspect.signature(JitterBuffer.add).parameters) == ["self", "packet"]
    # The codec table the tap reads: payload type -> RTCRtpCodecParameters, filled by receive().
    assert getattr(receiver, CODECS_ATTRIBUTE) == {}


def test_the_stock_buffer_holds_four_packets_before_it_hands_out_the_first() -> None:
    # Why the box replaces it: with 20 ms packets that is ~80 ms before the first sound.
    buffer = JitterBuffer(capacity=16, prefetch=4)
    results = [buffer.add(packet) for packet in _with_data(opus_packets(6))]
    assert [frame is not None for _, frame in results] == [False] * 4 + [True, True]


async def test_the_receiver_gives_the_tap_each_depayloaded_packet_and_decodes_nothing(
    receiver: RTCRtpReceiver,
) -> None:
    getattr(receiver, CODECS_ATTRIBUTE)[OPUS.payloadType] = OPUS
    sink = Sink()
    tap = tap_receiver(receiver, sink, clock=lambda: 12.5)
    assert getattr(receiver, JITTER_BUFFER_ATTRIBUTE) is tap
    sent = opus_packets(8)
    for packet in sent:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    assert sink.packets == [(p.sequence_number, p.timestamp, p.payload, 12.5) for p in sent]
    assert tap.packets == 8
    assert receiver._RTCRtpReceiver__decoder_queue.qsize() == 0  # type: ignore[attr-defined]


async def test_packets_of_another_codec_are_left_out(receiver: RTCRtpReceiver) -> None:
    getattr(receiver, CODECS_ATTRIBUTE)[PCMU.payloadType] = PCMU
    sink = Sink()
    tap = tap_receiver(receiver, sink)
    for packet in opus_packets(3, payload_type=PCMU.payloadType):
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    assert sink.packets == []
    assert tap.foreign == 3


async def test_a_closed_tap_forwards_nothing_and_a_new_tap_replaces_it(
    receiver: RTCRtpReceiver,
) -> None:
    getattr(receiver, CODECS_ATTRIBUTE)[OPUS.payloadType] = OPUS
    first, second = Sink(), Sink()
    tap_receiver(receiver, first)
    newer = tap_receiver(receiver, second)
    packets = opus_packets(2)
    await receiver._handle_rtp_packet(packets[0], arrival_time_ms=0)
    newer.close()
    await receiver._handle_rtp_packet(packets[1], arrival_time_ms=0)
    assert first.packets == []
    assert [p[0] for p in second.packets] == [packets[0].sequence_number]


def test_a_receiver_that_is_not_as_pinned_is_refused_with_what_to_do(
    receiver: RTCRtpReceiver,
) -> None:
    delattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    with pytest.raises(AudioError, match="profile=stock"):
        tap_receiver(receiver, Sink())
    assert not hasattr(receiver, JITTER_BUFFER_ATTRIBUTE)


# --- two real peers on loopback ---------------------------------------------------------------


async def test_between_two_peers_the_tapped_side_gets_every_packet_and_decodes_none() -> None:
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))
    sink = Sink()
    taps: list[RtpTap] = []
    started_before_tap: list[bool] = []
    answerer_tracks: list[MediaStreamTrack] = []

    @offerer.on("track")
    def on_offerer_track(track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in offerer.getTransceivers() if t.receiver.track is track)
        # The tap must be in place before media flows: the receiver has not started yet.
        started_before_tap.append(receiver._RTCRtpReceiver__started)  # type: ignore[attr-defined]
        taps.append(tap_receiver(receiver, sink))

    @answerer.on("track")
    def on_answerer_track(track: MediaStreamTrack) -> None:
        answerer_tracks.append(track)

    try:
        offerer.addTrack(ToneTrack(1000, 0.5))
        answerer.addTrack(ToneTrack(500, 0.5))
        await negotiate_on_loopback(offerer, answerer)
        await eventually(lambda: len(sink.packets) >= 50, "50 packets at the tap")
        assert started_before_tap == [False]
        # aiortc's own sender: 20 ms Opus packets, numbered and stamped in order.
        sequences = [p[0] for p in sink.packets[:50]]
        timestamps = [p[1] for p in sink.packets[:50]]
        assert all((b - a) % 65_536 == 1 for a, b in itertools.pairwise(sequences))
        assert all((b - a) % (1 << 32) == 960 for a, b in itertools.pairwise(timestamps))
        assert {packet_samples(p[2]) for p in sink.packets} == {960}
        arrivals = [p[3] for p in sink.packets]
        assert arrivals == sorted(arrivals)
        # The other direction, untapped, still decodes as aiortc does.
        assert len(answerer_tracks) == 1
        frame = await asyncio.wait_for(answerer_tracks[0].recv(), 10)
        assert frame.sample_rate == 48_000
        # The tapped side's decoder got nothing to do.
        tapped = next(t.receiver for t in offerer.getTransceivers())
        assert tapped._RTCRtpReceiver__decoder_queue.qsize() == 0  # type: ignore[attr-defined]
        assert tapped.track._queue.qsize() == 0  # type: ignore[attr-defined]
    finally:
        await offerer.close()
        await answerer.close()
    assert taps[0].packets >= 50


def _with_data(packets: list[RtpPacket]) -> list[RtpPacket]:
    """As ``_handle_rtp_packet`` leaves them for the buffer: Opus depayloads to itself."""
    for packet in packets:
        packet._data = packet.payload  # type: ignore[attr-defined]
    return packets
