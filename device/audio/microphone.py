"""The microphone as an aiortc audio track: one per peer connection.

    track = engine.new_microphone_track()
    pc.addTrack(track)            # aiortc calls ``await track.recv()`` for each frame

The sound card's input callback is the clock. Its 10 ms blocks reach the event loop through
``loop.call_soon_threadsafe`` (the engine does that once per block for every track), are joined
into s16 mono 48 kHz frames with pts counting samples, and wait in a small queue. The queue never
grows: if nobody reads (the peer connection is not sending yet) the oldest frames are dropped, so
a late reader gets the newest sound, and the gap shows in the pts as lost audio would. While not
sending (muted, or not on air) the frames keep coming, as digital silence: the other side's
jitter buffer keeps its rhythm and not a sample of the room leaves the box.

Two kinds of frame, chosen per track:

- stock (``music=False``): 20 ms ``av.AudioFrame``s of ``FRAME_SAMPLES``, which aiortc's own
  Opus encoder turns into 20 ms ``voip`` packets on a worker thread.
- music (``music=True``): 10 ms frames of ``MUSIC_FRAME_SAMPLES``, encoded here with
  ``device.audio.opus.OpusEncoder`` (low delay, 128 kbit/s, no DTX) and handed over as
  ``av.Packet``s (pts in samples, time base 1/48000). aiortc 1.16's ``RTCRtpSender`` sends
  anything that is not an ``av.Frame`` through its encoder's ``pack()``, which for Opus only
  converts the pts into the RTP timestamp: our packets go on the wire as they are (pinned by
  tests/test_aiortc_send_pins.py). The negotiated codec must be Opus, which aiortc always
  prefers. Encoding happens in ``recv()``, on the event loop (~60 us per frame here), so frames
  dropped from the queue cost nothing; the encoder then sees a jump, and the far side's decoder
  a gap in the timestamps, as for a lost packet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.audio.format import FRAME_SAMPLES, MUSIC_FRAME_SAMPLES, SAMPLE_RATE, TIME_BASE
from device.audio.opus import OpusEncoder

if TYPE_CHECKING:
    from av.stream import Stream

QUEUE_FRAMES = 5  # 100 ms of stock frames: more than that waiting means nobody is listening
MUSIC_QUEUE_FRAMES = 10  # the same 100 ms in 10 ms music frames


class Microphone(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        *,
        sending: bool = False,
        queue_frames: int | None = None,
        on_stop: Callable[[Microphone], None] | None = None,
        music: bool = False,
    ) -> None:
        """``queue_frames``: how many frames may wait (default: 100 ms worth)."""
        super().__init__()
        self._sending = sending
        self._frame_samples = MUSIC_FRAME_SAMPLES if music else FRAME_SAMPLES
        if queue_frames is None:
            queue_frames = MUSIC_QUEUE_FRAMES if music else QUEUE_FRAMES
        self._encoder = OpusEncoder(frame_samples=self._frame_samples) if music else None
        # Frames waiting for aiortc as (pts, samples): made into an AudioFrame or a Packet only
        # when aiortc takes one, so a dropped frame costs no encoding.
        self._frames: deque[tuple[int, npt.NDArray[np.int16]]] = deque(maxlen=queue_frames)
        self._arrived = asyncio.Event()
        self._pending = np.zeros(self._frame_samples, dtype=np.int16)
        self._pending_fill = 0
        self._pts = 0
        self._on_stop = on_stop
        self.dropped = 0  # frames nobody read in time

    @property
    def sending(self) -> bool:
        return self._sending

    def set_sending(self, sending: bool) -> None:
        """False: from the next block on, the frames carry digital silence."""
        self._sending = sending

    def feed(self, block: npt.NDArray[np.int16]) -> None:
        """Add one block from the card (on the event loop's thread)."""
        if self.readyState != "live":
            return
        offset = 0
        while offset < len(block):
            take = min(len(block) - offset, self._frame_samples - self._pending_fill)
            target = self._pending[self._pending_fill : self._pending_fill + take]
            if self._sending:
                target[:] = block[offset : offset + take]
            else:
                target.fill(0)
            self._pending_fill += take
            offset += take
            if self._pending_fill == self._frame_samples:
                self._emit()

    def _emit(self) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append((self._pts, self._pending.copy()))
        self._pts += self._frame_samples
        self._pending_fill = 0
        self._arrived.set()

    async def recv(self) -> av.AudioFrame | av.Packet[Stream]:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        pts, samples = self._frames.popleft()
        if self._encoder is not None:
            packet = av.Packet(self._encoder.encode(samples))
            packet.pts = pts
            packet.time_base = TIME_BASE
            return packet
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, self._frame_samples), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = pts
        return frame

    def stop(self) -> None:
        super().stop()
        self._frames.clear()
        self._arrived.set()  # a waiting recv() wakes up and ends
        if self._on_stop is not None:
            on_stop, self._on_stop = self._on_stop, None
            on_stop(self)
        if self._encoder is not None:
            self._encoder.close()
