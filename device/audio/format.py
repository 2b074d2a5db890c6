"""The box's one audio format, shared by every part of the audio path.

The sound card runs at 48 kHz, mono, in 10 ms blocks. The microphone track hands aiortc 20 ms
frames in the "stock" profile, because stock aiortc's Opus encoder packs 20 ms; the "music"
profile encodes 10 ms Opus frames itself (``device.audio.opus``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

SAMPLE_RATE: Final = 48_000
CHANNELS: Final = 1
BLOCK_FRAMES: Final = 480  # 10 ms: one sound-card callback
FRAME_SAMPLES: Final = 960  # 20 ms: one microphone frame for stock aiortc's encoder
MUSIC_FRAME_SAMPLES: Final = 480  # 10 ms: one Opus frame of the music profile
TIME_BASE: Final = Fraction(1, SAMPLE_RATE)  # pts of our frames count samples

INT16_FULL_SCALE: Final = 32768.0
SILENCE_DBFS: Final = -120.0  # what a level of exactly zero is reported as


def ms_to_samples(ms: float) -> int:
    return round(SAMPLE_RATE * ms / 1000)
