"""The speaker's side of the link: the other party's audio, into a buffer the card plays from.

Two ways, one per receive path (``audio.profile``):

    speaker = Speaker(playout)              # "stock": aiortc decodes, frames into a PlayoutBuffer
    speaker.attach(track)                   # from RTCPeerConnection's "track" event
    ...
    await speaker.detach()                  # the link closed: the task ends, the buffer empties

    tapped = TappedSpeaker(jitter)          # "music": RTP packets into our JitterBuffer
    tapped.attach(track, receiver)          # the track's RTCRtpReceiver
    ...
    await tapped.detach()

``Speaker``: one asyncio task per attached track calls ``recv()`` and pushes the samples
(resampled to s16 mono 48 kHz when the decoder gives anything else: aiortc's Opus decoder gives
stereo) into the playout buffer, from which the sound card's output callback takes them at its
own pace.

``TappedSpeaker``: the receiver's jitter buffer is replaced by a tap (``device.net.rtp_tap``), so
packets go undecoded into the ``JitterBuffer``, which the card's callback pulls and decodes. The
track then never yields a frame; its task only waits for it to end (the receiver stopped) to
forget the stream.
"""

from __future__ import annotations

import asyncio
import contextlib

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from device.audio.format import SAMPLE_RATE
from device.audio.jitter import JitterBuffer
from device.audio.playout import PlayoutBuffer
from device.net.rtp_tap import RtpTap, tap_receiver


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

    def release(self) -> None:
        """Stop playing at once (another path takes over); the task ends on its own."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
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


class TappedSpeaker:
    def __init__(self, jitter: JitterBuffer) -> None:
        self._jitter = jitter
        self._tap: RtpTap | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def attached(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def packets(self) -> int:
        """Packets the current tap handed over (0 without one)."""
        return self._tap.packets if self._tap is not None else 0

    def attach(self, track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        """Play what ``receiver`` gets from now on, instead of whatever played before.

        Raises ``AudioError`` (and changes nothing) if aiortc's receiver cannot be tapped."""
        if track.kind != "audio":
            raise ValueError(f"the speaker plays audio tracks, not {track.kind}")
        tap = tap_receiver(receiver, self._jitter.put)
        self.release()
        self._jitter.clear()
        self._tap = tap
        self._task = asyncio.get_running_loop().create_task(
            self._watch(track), name="twm-tapped-speaker"
        )

    async def detach(self) -> None:
        """Stop playing, and wait until the watching task has ended."""
        task = self._task
        self.release()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def release(self) -> None:
        """Stop playing at once: the tap forwards nothing more, the buffer forgets the stream."""
        task, self._task = self._task, None
        tap, self._tap = self._tap, None
        if tap is not None:
            tap.close()
        if task is not None:
            task.cancel()
            self._jitter.clear()

    async def _watch(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()  # no frames come (aiortc's decoder is idle): only the end
        except MediaStreamError:
            return  # the receiver stopped; the link decides what happens next
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                if self._tap is not None:
                    self._tap.close()
                    self._tap = None
                self._jitter.clear()
