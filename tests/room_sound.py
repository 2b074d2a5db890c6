"""Sound in the virtual rooms of the PipeWire rig, for tests and benchmarks that run whole boxes:
a tone that plays into one room without end, and an ear on another box's speaker that notes
when, and how loud, the tone came out of it.

    with tone_in_room(rig, home_card.room), ear_on(rig, school_card.speaker) as ear:
        ...
        ear.flowing()                 # the tone is coming out of the speaker now
        ear.first_heard(after=t0)     # when it first came out after t0 (time.monotonic())

Both are ``pacat`` processes on threads of their own, so their timing does not depend on how
busy the event loop is. Each 10 ms block the ear hears is timestamped when it arrives (pacat
records with 10 ms latency: the figures include that and the rig's own buffering).

The tone's pitch is chosen away from every cue's notes and bell partials (the cues go up to
about 2.9 kHz), so a chime at the school is never taken for the care home's sound.
"""

from __future__ import annotations

import bisect
import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from device.audio.format import SAMPLE_RATE
from device.audio.selftest import level_at
from device.audio.virtual import PipeWire, end_process

TONE_HZ = 3500.0
TONE_AMPLITUDE = 0.3
BLOCK = SAMPLE_RATE // 100  # 10 ms
# The tone at the default volume (step 6, -13 dB) comes out at about 0.03 RMS; silence and the
# cues' leakage into this frequency stay under 0.001.
HEARD = 0.005
_RAW = ("--raw", "--format=s16le", f"--rate={SAMPLE_RATE}", "--channels=1", "--latency-msec=10")


def _tone_chunk(hz: float, amplitude: float, seconds: float) -> bytes:
    frames = round(seconds * SAMPLE_RATE)
    # A whole number of cycles per chunk, so that chunks join without a click.
    cycles = max(1, round(hz * frames / SAMPLE_RATE))
    t = np.arange(frames) / frames
    samples = amplitude * 32767 * np.sin(2 * np.pi * cycles * t)
    return samples.astype("<i2").tobytes()


@contextlib.contextmanager
def tone_in_room(
    rig: PipeWire, room: str, hz: float = TONE_HZ, amplitude: float = TONE_AMPLITUDE
) -> Iterator[None]:
    """A steady tone played into ``room`` (a null sink), for as long as the block lasts."""
    process = subprocess.Popen(
        ["pacat", "--playback", f"--device={room}", *_RAW],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=rig.env,
    )
    chunk = _tone_chunk(hz, amplitude, 0.1)
    stopping = threading.Event()

    def play() -> None:
        assert process.stdin is not None
        # The pipe paces the writes: pacat takes samples only as fast as the sink plays them.
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            while not stopping.is_set():
                process.stdin.write(chunk)
                process.stdin.flush()

    player = threading.Thread(target=play, name="tone-in-room", daemon=True)
    player.start()
    try:
        yield
    finally:
        stopping.set()
        end_process(process)
        player.join(timeout=5)
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()


@dataclass
class Ear:
    """What came out of a speaker: the tone's level in each 10 ms block, and when it arrived."""

    hz: float
    times: list[float] = field(default_factory=list)  # time.monotonic() of each block, in order
    levels: list[float] = field(default_factory=list)  # RMS of the tone in each block
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hear(self, samples: np.ndarray) -> None:
        level = level_at(samples.astype(np.float64) / 32768, self.hz)
        with self._lock:
            self.times.append(time.monotonic())
            self.levels.append(level)

    def since(self, after: float) -> list[float]:
        """The levels of the blocks that arrived after ``after`` (monotonic)."""
        with self._lock:
            return self.levels[bisect.bisect_left(self.times, after) :]

    def recent(self, seconds: float) -> list[float]:
        return self.since(time.monotonic() - seconds)

    def flowing(self, seconds: float = 0.5, share: float = 0.8, threshold: float = HEARD) -> bool:
        """The tone came out of the speaker in at least ``share`` of the last ``seconds``."""
        levels = self.recent(seconds)
        if len(levels) < seconds * 100 * 0.5:  # the recorder itself has stalled
            return False
        return sum(level > threshold for level in levels) >= share * len(levels)

    def silent(self, seconds: float = 0.5, threshold: float = HEARD) -> bool:
        """Not one block of the last ``seconds`` carried the tone."""
        levels = self.recent(seconds)
        return len(levels) >= seconds * 100 * 0.5 and not any(lv > threshold for lv in levels)

    def first_heard(self, after: float, threshold: float = HEARD) -> float | None:
        """When the first block after ``after`` (monotonic) that carried the tone arrived."""
        with self._lock:
            start = bisect.bisect_left(self.times, after)
            for index in range(start, len(self.times)):
                if self.levels[index] > threshold:
                    return self.times[index]
        return None

    def peak(self, seconds: float) -> float:
        return max(self.recent(seconds), default=0.0)


@contextlib.contextmanager
def ear_on(rig: PipeWire, speaker: str, hz: float = TONE_HZ) -> Iterator[Ear]:
    """Listen to ``speaker`` (a null sink's monitor) for as long as the block lasts."""
    process = subprocess.Popen(
        ["pacat", "--record", f"--device={speaker}.monitor", *_RAW],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=rig.env,
        bufsize=0,  # unbuffered: each block is timed when it arrives, not when a buffer fills
    )
    ear = Ear(hz)

    def listen() -> None:
        assert process.stdout is not None
        size = 2 * BLOCK
        pending = b""
        while True:
            data = process.stdout.read(size - len(pending))
            if not data:
                return
            pending += data
            if len(pending) == size:
                ear.hear(np.frombuffer(pending, dtype="<i2"))
                pending = b""

    listener = threading.Thread(target=listen, name="ear", daemon=True)
    listener.start()
    try:
        yield ear
    finally:
        end_process(process)
        listener.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
