"""Pins of the aiortc internals the box's music send path stands on. They fail if an aiortc
upgrade changes them; then re-read aiortc/rtcrtpsender.py and aiortc/codecs/opus.py before
moving the pin.

The box encodes its own 10 ms Opus (device/audio/opus.py) and its microphone track returns
``av.Packet``s (device/audio/microphone.py). That works only because aiortc 1.16's
``RTCRtpSender._next_encoded_frame`` sends anything that is not an ``av.Frame`` through the
codec's ``pack()``, and Opus's ``pack()`` only turns the packet's pts into an RTP timestamp.
"""

from __future__ import annotations

from fractions import Fraction

import aiortc
import av
import numpy as np
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpCodecParameters,
    RTCRtpSender,
)
from aiortc.codecs import get_capabilities, get_encoder
from aiortc.codecs import opus as aiortc_opus
from aiortc.mediastreams import MediaStreamTrack

from device.audio.opus import OpusEncoder

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96)


def test_aiortc_is_the_version_these_pins_were_read_from() -> None:
    assert aiortc.__version__ == "1.16.0"


class Handing(MediaStreamTrack):
    """A track that hands over exactly what it is given, as the music microphone does."""

    kind = "audio"

    def __init__(self, items: list[av.Packet | av.AudioFrame]) -> None:
        super().__init__()
        self._items = items

    async def recv(self) -> av.Packet | av.AudioFrame:
        return self._items.pop(0)


def packet(payload: bytes, pts: int, time_base: Fraction) -> av.Packet:
    made = av.Packet(payload)
    made.pts = pts
    made.time_base = time_base
    return made


def unstarted_transport() -> RTCDtlsTransport:
    """A real DTLS transport that never starts (nothing is gathered, nothing is sent)."""
    gatherer = RTCIceGatherer(iceServers=[])
    return RTCDtlsTransport(RTCIceTransport(gatherer), [RTCCertificate.generateCertificate()])


async def test_the_sender_puts_a_packet_on_the_wire_as_is_through_pack() -> None:
    encoder = OpusEncoder()
    ours = [encoder.encode(np.zeros(480, np.int16)) for _ in range(2)]
    track = Handing(
        [packet(ours[0], 4800, Fraction(1, 48000)), packet(ours[1], 110, Fraction(1, 1000))]
    )
    transport = unstarted_transport()
    sender = RTCRtpSender(track, transport)
    try:
        first = await sender._next_encoded_frame(OPUS)
        second = await sender._next_encoded_frame(OPUS)
    finally:
        await transport.stop()
    # One RTP payload per packet, byte for byte ours, no re-encoding, no resampling...
    assert first.payloads == [ours[0]]
    assert second.payloads == [ours[1]]
    # ...with the RTP timestamp (before aiortc adds its random origin) in 48 kHz ticks.
    assert first.timestamp == 4800
    assert second.timestamp == 110 * 48
    assert first.audio_level is None  # only decoded frames get an audio level


async def test_the_sender_still_encodes_frames_itself_so_only_packets_bypass_it() -> None:
    # The other branch, for contrast: an av.AudioFrame is re-encoded by aiortc (20 ms, so
    # one 10 ms frame gives nothing yet). If this ever passes frames through, the isinstance
    # test above is not what routes our packets any more.
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 480), np.int16), format="s16", layout="mono")
    frame.sample_rate = 48000
    frame.pts = 0
    frame.time_base = Fraction(1, 48000)
    transport = unstarted_transport()
    sender = RTCRtpSender(Handing([frame]), transport)
    try:
        assert await sender._next_encoded_frame(OPUS) is None
    finally:
        await transport.stop()


def test_opus_pack_converts_the_pts_by_its_time_base_and_keeps_the_bytes() -> None:
    encoder = get_encoder(OPUS)
    assert isinstance(encoder, aiortc_opus.OpusEncoder)
    payloads, timestamp = encoder.pack(packet(b"\x78\x01\x02", 3, Fraction(1, 100)))
    assert payloads == [b"\x78\x01\x02"]
    assert timestamp == 3 * 480
    payloads, timestamp = encoder.pack(packet(b"\x78", 960, Fraction(1, 48000)))
    assert timestamp == 960


def test_aiortc_offers_opus_first_so_our_packets_are_sent_as_opus() -> None:
    # pack() sends whatever bytes it gets under the negotiated codec: it must be Opus.
    assert get_capabilities("audio").codecs[0].mimeType == "audio/opus"
