"""The speaker's playout buffer: the remote audio waits here for the sound card to want it.

    buffer = PlayoutBuffer()              # target 40 ms, never more than 150 ms
    buffer.push(samples)                  # on the event loop, as decoded frames arrive
    block = buffer.pull(480)              # on the speaker's audio thread, one block a callback

The receive side of aiortc has no playout clock, so the speaker callback is the clock: it takes
exactly one block each time. The buffer starts playing once it holds the target fill (~40 ms, two
Opus frames of slack for network jitter). If it runs dry that block is padded with silence, it
counts an underrun and waits for the target fill again rather than crackling packet by packet.
It never grows past the hard maximum (~150 ms): a burst that would overfill it drops the oldest
audio down to the target. And if the two clocks drift apart (the sender's card a little faster
than ours) the fill creeps up: whenever it has stayed above target + 10 ms for a whole second the
excess is dropped, so the delay stays near the target.

Thread-safe: ``push`` and ``pull`` take one lock for a few microseconds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device.audio.format import BLOCK_FRAMES, ms_to_samples

TARGET_MS = 40
MAXIMUM_MS = 150
DRIFT_SLACK_MS = 10
DRIFT_WINDOW_PULLS = 100  # one second of 10 ms callbacks


@dataclass(frozen=True)
class PlayoutStats:
    fill: int  # samples waiting now
    underruns: int  # times the speaker found the buffer dry while playing
    dropped: int  # samples thrown away to keep the delay bounded


class PlayoutBuffer:
    def __init__(
        self,
        target: int = ms_to_samples(TARGET_MS),
        maximum: int = ms_to_samples(MAXIMUM_MS),
        drift_slack: int = ms_to_samples(DRIFT_SLACK_MS),
        drift_window: int = DRIFT_WINDOW_PULLS,
    ) -> None:
        if not 0 < target < maximum:
            raise ValueError("the target fill must be positive and below the maximum")
        self.target = target
        self.maximum = maximum
        self._drift_slack = drift_slack
        self._drift_window = drift_window
        self._ring = np.zeros(maximum, dtype=np.int16)
        self._start = 0
        self._fill = 0
        self._priming = True
        self._underruns = 0
        self._dropped = 0
        self._pulls_in_window = 0
        self._lowest_in_window = maximum
        self._lock = threading.Lock()

    @property
    def fill(self) -> int:
        return self._fill

    def stats(self) -> PlayoutStats:
        with self._lock:
            return PlayoutStats(self._fill, self._underruns, self._dropped)

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        """Append mono 48 kHz samples; drop the oldest if the buffer would pass its maximum."""
        with self._lock:
            incoming = samples
            if self._fill + len(incoming) > self.maximum:
                excess = self._fill + len(incoming) - self.target
                from_buffer = min(excess, self._fill)
                self._drop(from_buffer)
                skip = excess - from_buffer
                self._dropped += skip
                incoming = incoming[skip:]
            self._write(incoming)

    def pull(self, frames: int = BLOCK_FRAMES) -> npt.NDArray[np.int16]:
        """The next ``frames`` samples for the speaker; silence while priming or dry."""
        out = np.zeros(frames, dtype=np.int16)
        with self._lock:
            if self._priming:
                if self._fill < self.target:
                    return out
                self._priming = False
            available = min(frames, self._fill)
            self._read(out[:available])
            if available < frames:
                self._underruns += 1
                self._priming = True
                return out
            self._follow_drift()
        return out

    def clear(self) -> None:
        """Forget what is waiting (the remote track went away) and prime again."""
        with self._lock:
            self._start = self._fill = 0
            self._priming = True
            self._pulls_in_window = 0
            self._lowest_in_window = self.maximum

    def _follow_drift(self) -> None:
        self._lowest_in_window = min(self._lowest_in_window, self._fill)
        self._pulls_in_window += 1
        if self._pulls_in_window < self._drift_window:
            return
        excess = self._lowest_in_window - self.target
        if excess > self._drift_slack:
            self._drop(excess)
        self._pulls_in_window = 0
        self._lowest_in_window = self.maximum

    def _write(self, samples: npt.NDArray[np.int16]) -> None:
        size = len(self._ring)
        end = (self._start + self._fill) % size
        first = min(len(samples), size - end)
        self._ring[end : end + first] = samples[:first]
        self._ring[: len(samples) - first] = samples[first:]
        self._fill += len(samples)

    def _read(self, out: npt.NDArray[np.int16]) -> None:
        size = len(self._ring)
        count = len(out)
        first = min(count, size - self._start)
        out[:first] = self._ring[self._start : self._start + first]
        out[first:] = self._ring[: count - first]
        self._start = (self._start + count) % size
        self._fill -= count

    def _drop(self, count: int) -> None:
        self._start = (self._start + count) % len(self._ring)
        self._fill -= count
        self._dropped += count
