"""RTP packets of a remote audio track straight to our jitter buffer, instead of aiortc's.

aiortc 1.16's ``RTCRtpReceiver`` gives each audio receiver ``JitterBuffer(capacity=16,
prefetch=4)``: it counts 20 ms packets and holds four before anything plays (~80 ms), then a
decoder thread turns frames into ``av.AudioFrame`` s for the track. There is no option for it.
For the music profile the box swaps that buffer for a ``RtpTap``:

    tap = tap_receiver(receiver, jitter.put)     # in the peer connection's "track" handler
    ...
    tap.close()                                  # the remote track went away

``RTCRtpReceiver._handle_rtp_packet`` sets ``packet._data`` (the depayloaded frame: for Opus the
payload itself) and then calls ``self.__jitter_buffer.add(packet)``; the tap hands (sequence
number, RTP timestamp, ``_data``, arrival time) to the sink and answers ``(False, None)``: no
picture loss to report, no frame to decode. So aiortc's decoder thread stays idle, the remote
track never yields a frame, and it still ends (``MediaStreamError``) when the receiver stops.
RTCP, statistics and the track's life stay aiortc's.

This touches aiortc internals (name-mangled private attributes). They are pinned to
``AIORTC_VERSION`` and tests/test_net_rtp_tap.py fails if an upgrade changes any of them;
``tap_receiver`` raises ``AudioError`` (the engine then falls back to the stock path) if the
receiver does not look as expected at run time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from device.errors import AudioError

AIORTC_VERSION: Final = "1.16.0"
# Where aiortc keeps what we replace and what we read (RTCRtpReceiver's private attributes).
JITTER_BUFFER_ATTRIBUTE: Final = "_RTCRtpReceiver__jitter_buffer"
CODECS_ATTRIBUTE: Final = "_RTCRtpReceiver__codecs"
OPUS_MIME_TYPE: Final = "audio/opus"

# (sequence number, RTP timestamp, payload, arrival time in seconds on ``clock``)
PacketSink = Callable[[int, int, bytes, float], None]

log = structlog.get_logger("twm.net.rtp_tap")


class RtpTap:
    """Stands where an ``RTCRtpReceiver``'s jitter buffer was; forwards Opus packets."""

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        sink: PacketSink,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._receiver = receiver
        self._sink: PacketSink | None = sink
        self._clock = clock
        self.packets = 0  # handed to the sink
        self.foreign = 0  # not Opus (another codec was negotiated): left out

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """aiortc's call for every RTP packet of the track, on the event loop."""
        sink = self._sink
        if sink is not None:
            if self._is_opus(packet.payload_type):
                self.packets += 1
                data: bytes = getattr(packet, "_data", packet.payload)
                sink(packet.sequence_number, packet.timestamp, data, self._clock())
            else:
                if self.foreign == 0:
                    log.warning("remote audio is not Opus: not played", pt=packet.payload_type)
                self.foreign += 1
        return False, None

    def close(self) -> None:
        """Stop forwarding (the receiver may still get packets until its connection closes)."""
        self._sink = None

    def _is_opus(self, payload_type: int) -> bool:
        codecs = getattr(self._receiver, CODECS_ATTRIBUTE, None)
        if not isinstance(codecs, dict):
            return False
        codec = codecs.get(payload_type)
        mime = getattr(codec, "mimeType", "")
        return isinstance(mime, str) and mime.lower() == OPUS_MIME_TYPE


def tap_receiver(
    receiver: RTCRtpReceiver,
    sink: PacketSink,
    clock: Callable[[], float] = time.monotonic,
) -> RtpTap:
    """Replace the receiver's jitter buffer with a tap into ``sink`` (a tap there already is
    closed and replaced). Call before the connection delivers media: from the "track" event."""
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE, None)
    if isinstance(current, RtpTap):
        current.close()
    elif not isinstance(current, JitterBuffer):
        raise AudioError(
            f"aiortc's RTCRtpReceiver has no jitter buffer where aiortc {AIORTC_VERSION} kept it "
            f"({JITTER_BUFFER_ATTRIBUTE}): device/net/rtp_tap.py needs updating for this aiortc; "
            "set audio.profile=stock (TWM_DEVICE_AUDIO__PROFILE) meanwhile"
        )
    tap = RtpTap(receiver, sink, clock)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, tap)
    return tap
