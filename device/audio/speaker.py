"""The speaker's side of the link: the other party's aiortc audio track, into the playout buffer.

    speaker = Speaker(playout)
    speaker.attach(track)       # from RTCPeerConnection's "track" event
    ...
    await speaker.detach()      # the link closed: the receiving task ends, the buffer empties

One asyncio task per attached track calls ``recv()`` and pushes the samples (resampled to s16
mono 48 kHz when the decoder gives anything else: aiortc's Opus decoder gives stereo) into the
playout buffer, from which the sound card's output callback takes them at its own pace.
"""

from __future__ import annotations

import asyncio
import contextlib

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.audio.format import SAMPLE_RATE
from device.audio.playout import PlayoutBuffer


class Speaker:
    def __init__(self, playout: PlayoutBuffer) -> None:
        self._playout = playout
        self._task: asyncio.Task[None] | None = None
        self.frames_received = 0

    @property
    def attached(self) -> bool:
        return self._task is not None and not self._task.done()

    def attach(self, track: MediaStreamTrack) -> None:
        """Play ``track`` from now on, instead of whatever played before."""
        if track.kind != "audio":
            raise ValueError(f"the speaker plays audio tracks, not {track.kind}")
        if self._task is not None:
            self._task.cancel()
        self._playout.clear()
        self._task = asyncio.get_running_loop().create_task(
            self._receive(track), name="twm-speaker"
        )

    async def detach(self) -> None:
        """Stop playing the attached track, if any, and wait until its task has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._playout.clear()

    async def _receive(self, track: MediaStreamTrack) -> None:
        resampler: av.AudioResampler | None = None
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                self.frames_received += 1
                if _is_ours(frame):
                    self._playout.push(_samples(frame))
                    continue
                if resampler is None:
                    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                for converted in resampler.resample(frame):
                    self._playout.push(_samples(converted))
        except MediaStreamError:
            return  # the other side's track ended; the link decides what happens next
        finally:
            if self._task is asyncio.current_task():
                self._playout.clear()


def _is_ours(frame: av.AudioFrame) -> bool:
    return (
        frame.format.name == "s16"
        and frame.layout.name == "mono"
        and frame.sample_rate == SAMPLE_RATE
    )


def _samples(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    # Packed s16 mono comes out as shape (1, samples).
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)
