"""Sound levels in dBFS, as a technician reads them (0 dBFS is a full-scale sine's peak).

meter = LevelMeter()
meter.add(block)           # on the audio thread, each block
meter.dbfs()               # on any thread: RMS of roughly the last 300 ms
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from device.audio.format import INT16_FULL_SCALE, SILENCE_DBFS

SMOOTHING = 0.03  # per 10 ms block: the level follows the sound over ~300 ms


def to_dbfs(amplitude: float) -> float:
    """``amplitude`` (1.0 = full scale) in dBFS; exact silence is ``SILENCE_DBFS``."""
    if amplitude <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20 * math.log10(amplitude))


def rms(samples: npt.NDArray[np.int16] | npt.NDArray[np.float32]) -> float:
    """Root mean square, in full-scale units (int16 samples are scaled to -1…1)."""
    if len(samples) == 0:
        return 0.0
    values = samples.astype(np.float64)
    if samples.dtype == np.int16:
        values /= INT16_FULL_SCALE
    return float(np.sqrt(np.mean(values * values)))


def peak(samples: npt.NDArray[np.int16] | npt.NDArray[np.float32]) -> float:
    if len(samples) == 0:
        return 0.0
    top = float(np.max(np.abs(samples.astype(np.float64))))
    return top / INT16_FULL_SCALE if samples.dtype == np.int16 else top


class LevelMeter:
    """A smoothed RMS level. ``add`` and ``dbfs`` may run on different threads: the one float
    they share is replaced whole, never updated in parts."""

    def __init__(self) -> None:
        self._mean_square = 0.0

    def add(self, samples: npt.NDArray[np.int16] | npt.NDArray[np.float32]) -> None:
        level = rms(samples)
        self._mean_square += SMOOTHING * (level * level - self._mean_square)

    def reset(self) -> None:
        self._mean_square = 0.0

    def dbfs(self) -> float:
        return to_dbfs(math.sqrt(self._mean_square)) if self._mean_square > 0 else SILENCE_DBFS
