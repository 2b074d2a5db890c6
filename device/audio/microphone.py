"""The microphone as an aiortc audio track: one per peer connection.

    track = engine.new_microphone_track()
    pc.addTrack(track)            # aiortc calls ``await track.recv()`` for each 20 ms frame

The sound card's input callback is the clock. Its 10 ms blocks reach the event loop through
``loop.call_soon_threadsafe`` (the engine does that once per block for every track), are joined
into s16 mono 48 kHz frames of ``FRAME_SAMPLES`` with pts counting samples, and wait in a small
queue. The queue never grows: if nobody reads (the peer connection is not sending yet) the oldest
frames are dropped, so a late reader gets the newest sound, and the gap shows in the pts as lost
audio would. While not sending (muted, or not on air) the frames keep coming, as digital silence:
the other side's jitter buffer keeps its rhythm and not a sample of the room leaves the box.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.audio.format import FRAME_SAMPLES, SAMPLE_RATE, TIME_BASE

QUEUE_FRAMES = 5  # 100 ms: more than that waiting means nobody is listening


class Microphone(MediaStreamTrack):
    kind = "audio"

    def __init__(
        self,
        *,
        sending: bool = False,
        queue_frames: int = QUEUE_FRAMES,
        on_stop: Callable[[Microphone], None] | None = None,
    ) -> None:
        super().__init__()
        self._sending = sending
        self._frames: deque[av.AudioFrame] = deque(maxlen=queue_frames)
        self._arrived = asyncio.Event()
        self._pending = np.zeros(FRAME_SAMPLES, dtype=np.int16)
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
            take = min(len(block) - offset, FRAME_SAMPLES - self._pending_fill)
            target = self._pending[self._pending_fill : self._pending_fill + take]
            if self._sending:
                target[:] = block[offset : offset + take]
            else:
                target.fill(0)
            self._pending_fill += take
            offset += take
            if self._pending_fill == FRAME_SAMPLES:
                self._emit()

    def _emit(self) -> None:
        frame = av.AudioFrame.from_ndarray(
            self._pending.reshape(1, FRAME_SAMPLES), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        self._pending_fill = 0
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._arrived.set()

    async def recv(self) -> av.AudioFrame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._frames.clear()
        self._arrived.set()  # a waiting recv() wakes up and ends
        if self._on_stop is not None:
            on_stop, self._on_stop = self._on_stop, None
            on_stop(self)
