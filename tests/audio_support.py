"""Helpers for the audio tests: tracks that stand in for the other side, and a bounded wait."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000


class ToneTrack(MediaStreamTrack):
    """A remote track as aiortc's Opus decoder delivers it: s16 stereo 48 kHz, 20 ms frames.

    ``paced``: frames come at the pace of real time (as from the network); otherwise as fast
    as they are asked for. ``frames``: how many before the track ends (None: never).
    """

    kind = "audio"

    def __init__(
        self, hz: float, amplitude: float, *, paced: bool = True, frames: int | None = None
    ) -> None:
        super().__init__()
        self.hz = hz
        self.amplitude = amplitude
        self.paced = paced
        self.frames_left = frames
        self.sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live" or self.frames_left == 0:
            raise MediaStreamError
        if self.paced:
            if self._start is None:
                self._start = time.monotonic()
            due = self._start + self.sent * 0.02
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        else:
            await asyncio.sleep(0)  # as fast as asked, but let the loop run (a network would)
        t = (np.arange(960) + self.sent * 960) / RATE
        mono = (self.amplitude * 32767 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        stereo = np.repeat(mono, 2).reshape(1, -1)  # packed: L R L R …
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self.sent * 960
        self.sent += 1
        if self.frames_left is not None:
            self.frames_left -= 1
        return frame


class SilentForeverTrack(MediaStreamTrack):
    """A remote track that never delivers (a link that went quiet)."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        await asyncio.Event().wait()
        raise MediaStreamError


class SteppedToneTrack(ToneTrack):
    """A tone track that hands out a frame only when the test allows one: no time involved."""

    def __init__(self, hz: float, amplitude: float) -> None:
        super().__init__(hz, amplitude, paced=False)
        self._permits = asyncio.Semaphore(0)

    def allow(self, frames: int = 1) -> None:
        for _ in range(frames):
            self._permits.release()

    async def recv(self) -> av.AudioFrame:
        await self._permits.acquire()
        return await super().recv()


WAIT_SECONDS = 20.0  # only a failsafe for a test that would otherwise hang: never a measurement


async def until(check: Callable[[], object], what: str, seconds: float = WAIT_SECONDS) -> None:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"waited {seconds:g} s for: {what}")
        await asyncio.sleep(0.005)
