"""What the speaker plays: the call audio at the chosen volume, with the cues laid on top.

    mixer = Mixer()
    mixer.set_volume(6)
    mixer.play(cue_sound(Cue.REACTION))          # on the event loop
    mixer.render(playout.pull(480), out)         # on the speaker's audio thread
    mixer.attach(synth)                          # a built-in instrument: any ``Source``

Cues are added to the call audio, never swapped for it: the music carries on under a reaction's
ding. The sum goes through a soft limiter (linear up to ``KNEE``, then a tanh curve towards
``CEILING``, just under full scale), so a cue over loud music bends a little instead of clipping.

Volume: ten steps, even in loudness (equal steps in dB, which is how ears hear) from -30 dB at
step 1 to 0 dB at step 10; step 0 silences the call. Cues follow the volume so they sit at the
same balance with the call, but never drop below step ``CUE_FLOOR_LEVEL``'s loudness: turned
all the way down, the box still answers every press — faintly — so nobody thinks it is broken,
and the volume tick tells that it is at its quietest rather than off.

A ``Source`` (the built-in MIDI synth, ``device.midi.synth``) is summed in at the call's volume,
before the limiter: it is the other side's music, played here. The mixer pulls it outside its
lock, so a slow block never holds up ``set_volume`` or ``play`` on the event loop. A source
whose ``render`` raises (or returns the wrong length) is detached and logged once: the speaker,
and the call on it, carry on without it.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import numpy.typing as npt
import structlog

from device.audio.format import INT16_FULL_SCALE
from device.lifecycle.machine import VOLUME_STEPS

QUIETEST_DB = -30.0  # step 1
CUE_FLOOR_LEVEL = 3
KNEE = 0.8
CEILING = 0.98  # the limiter's asymptote: a little under full scale, even after float rounding
MAX_VOICES = 4  # cues sounding at once; a fifth replaces the oldest

log = structlog.get_logger("twm.audio")


class Source(Protocol):
    """Sound made on demand on the speaker's audio thread, e.g. a software synth."""

    def render(self, frames: int) -> npt.NDArray[np.float32]:
        """The next ``frames`` mono samples at 48 kHz, full scale 1.0."""
        ...


def volume_gain(level: int) -> float:
    """The linear gain of volume step ``level`` (0 … ``VOLUME_STEPS``)."""
    if not 0 <= level <= VOLUME_STEPS:
        raise ValueError(f"volume level {level} is not between 0 and {VOLUME_STEPS}")
    if level == 0:
        return 0.0
    db = QUIETEST_DB * (VOLUME_STEPS - level) / (VOLUME_STEPS - 1)
    return float(10 ** (db / 20))


def cue_gain(level: int) -> float:
    return volume_gain(max(level, CUE_FLOOR_LEVEL))


def soft_limit(samples: npt.NDArray[np.float32]) -> None:
    """In place: unchanged below ``KNEE``, bent smoothly towards ``CEILING`` above it."""
    over = np.abs(samples) > KNEE
    if not over.any():
        return
    loud = samples[over]
    headroom = CEILING - KNEE
    bent = KNEE + headroom * np.tanh((np.abs(loud) - KNEE) / headroom)
    samples[over] = np.sign(loud) * bent


class _Voice:
    __slots__ = ("position", "samples")

    def __init__(self, samples: npt.NDArray[np.float32]) -> None:
        self.samples = samples
        self.position = 0


class Mixer:
    def __init__(self, level: int = 6) -> None:
        self._lock = threading.Lock()
        self._voices: list[_Voice] = []
        self._call_gain = 0.0
        self._cue_gain = 0.0
        self._source: Source | None = None  # one reference: read on the audio thread unlocked
        self.level = level
        self.set_volume(level)

    def set_volume(self, level: int) -> None:
        call, cue = volume_gain(level), cue_gain(level)
        with self._lock:
            self.level = level
            self._call_gain = call
            self._cue_gain = cue

    def play(self, samples: npt.NDArray[np.float32]) -> None:
        """Start a cue now, over whatever is playing."""
        with self._lock:
            if len(self._voices) >= MAX_VOICES:
                self._voices.pop(0)
            self._voices.append(_Voice(samples))

    def attach(self, source: Source) -> None:
        """Sum ``source`` into the output from the next block on, instead of any before."""
        with self._lock:
            self._source = source

    def detach(self, source: Source) -> None:
        """Stop pulling ``source`` (nothing happens if another one is attached by now)."""
        with self._lock:
            if self._source is source:
                self._source = None

    @property
    def source(self) -> Source | None:
        """The source attached now (None once detached, also after it failed)."""
        return self._source

    @property
    def playing(self) -> int:
        """How many cues are sounding."""
        return len(self._voices)

    def render(self, call: npt.NDArray[np.int16], out: npt.NDArray[np.float32]) -> None:
        """Write the call audio at the volume, plus the source and the cues, into ``out`` (as
        long as ``call``)."""
        extra = self._pull_source(len(out))
        with self._lock:
            np.multiply(call, self._call_gain / INT16_FULL_SCALE, out=out, casting="unsafe")
            if extra is not None:
                out += extra * self._call_gain
            for voice in self._voices:
                chunk = voice.samples[voice.position : voice.position + len(out)]
                out[: len(chunk)] += chunk * self._cue_gain
                voice.position += len(chunk)
            self._voices = [v for v in self._voices if v.position < len(v.samples)]
        soft_limit(out)

    def _pull_source(self, frames: int) -> npt.NDArray[np.float32] | None:
        source = self._source
        if source is None:
            return None
        try:
            samples = source.render(frames)
            if samples.shape != (frames,):
                raise ValueError(f"rendered {samples.shape} samples, not ({frames},)")
        except Exception:
            # Anything from the source (a native library included) must not end the speaker's
            # callback, which would fail the card and drop the call: the source goes instead.
            self.detach(source)
            log.exception("a sound source failed on the speaker: detached", source=repr(source))
            return None
        return samples
