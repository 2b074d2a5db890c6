"""``twm-device test-audio``: play a tone on the speaker, and listen with the microphone.

    result = await self_test(settings.audio)
    print(result.summary())
    # played 440 Hz for 1.0 s on 'Jabra SPEAK 410'; the microphone ('Jabra SPEAK 410') heard
    # -23.4 dBFS RMS, peak -14.1 dBFS; the tone: -24.0 dBFS — heard

The microphone is measured over the same time as the tone plays, plus a short tail for the sound
to travel from the speaker to the microphone (and through the card's buffers). Both directions run
on the card's own clock: the test ends when the speaker has played the tone and the tail, not
after a wall-clock wait; a card that never calls back fails the test with ``AudioError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device.audio.format import INT16_FULL_SCALE, SAMPLE_RATE
from device.audio.meter import peak, rms, to_dbfs
from device.audio.soundcard import CardFactory, sounddevice_card
from device.errors import AudioError
from device.settings import AudioSettings

TONE_HZ = 440.0
TONE_SECONDS = 1.0
TONE_AMPLITUDE = 0.25  # -12 dBFS: clearly audible, not startling
TAIL_SECONDS = 0.3
HEARD_DBFS = -60.0  # quieter than this the microphone heard nothing useful
FADE_SECONDS = 0.01
CHECK_SECONDS = 0.25


@dataclass(frozen=True)
class SelfTestResult:
    input_name: str
    output_name: str
    tone_hz: float
    tone_seconds: float
    rms_dbfs: float  # everything the microphone heard
    peak_dbfs: float
    tone_dbfs: float  # the RMS of the tone's frequency alone in what the microphone heard
    captured_seconds: float

    @property
    def heard_tone(self) -> bool:
        """The tone came through, and it is most of what the microphone heard."""
        return self.tone_dbfs >= HEARD_DBFS and self.tone_dbfs >= self.rms_dbfs - 6.0

    def summary(self) -> str:
        verdict = "heard" if self.heard_tone else "NOT heard"
        return (
            f"played {self.tone_hz:g} Hz for {self.tone_seconds:g} s on {self.output_name!r}; "
            f"the microphone ({self.input_name!r}) heard {self.rms_dbfs:.1f} dBFS RMS, "
            f"peak {self.peak_dbfs:.1f} dBFS; the tone: {self.tone_dbfs:.1f} dBFS — {verdict}"
        )


def tone(hz: float, seconds: float, amplitude: float) -> npt.NDArray[np.float32]:
    """A sine with 10 ms fades, so the test itself does not click."""
    count = round(seconds * SAMPLE_RATE)
    t = np.arange(count) / SAMPLE_RATE
    samples = amplitude * np.sin(2 * np.pi * hz * t)
    fade = min(round(FADE_SECONDS * SAMPLE_RATE), count // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    samples[:fade] *= ramp
    samples[count - fade :] *= ramp[::-1]
    return samples.astype(np.float32)


def level_at(samples: npt.NDArray[np.float64], hz: float) -> float:
    """RMS of the ``hz`` component of ``samples`` (full-scale units), by one DFT bin."""
    if len(samples) == 0:
        return 0.0
    n = np.arange(len(samples))
    window = np.hanning(len(samples))
    component = np.dot(samples * window, np.exp(-2j * np.pi * hz * n / SAMPLE_RATE))
    amplitude = 2 * abs(component) / np.sum(window)
    return float(amplitude / math.sqrt(2))


class _Recorder:
    """Plays the tone and keeps what the microphone hears; on the card's threads."""

    def __init__(self, signal: npt.NDArray[np.float32], tail: int, loop: asyncio.AbstractEventLoop):
        self._signal = signal
        self._total = len(signal) + tail
        self._played = 0
        self._loop = loop
        self.heard: list[npt.NDArray[np.int16]] = []
        self.done = asyncio.Event()
        self.problem: str | None = None

    def on_input(self, block: npt.NDArray[np.int16]) -> None:
        if 0 < self._played <= self._total:
            self.heard.append(block.copy())

    def on_output(self, out: npt.NDArray[np.float32]) -> None:
        start = self._played
        chunk = self._signal[start : start + len(out)]
        out.fill(0.0)
        out[: len(chunk)] = chunk
        self._played += len(out)
        if start < self._total <= self._played:
            self._loop.call_soon_threadsafe(self.done.set)

    def on_error(self, message: str) -> None:
        self.problem = message
        self._loop.call_soon_threadsafe(self.done.set)


async def self_test(
    settings: AudioSettings,
    *,
    card_factory: CardFactory = sounddevice_card,
    tone_hz: float = TONE_HZ,
    tone_seconds: float = TONE_SECONDS,
    give_up_seconds: float = 10.0,
) -> SelfTestResult:
    """Play the tone and measure the microphone; ``AudioError`` if the card cannot do it."""
    loop = asyncio.get_running_loop()
    card = card_factory(settings)
    recorder = _Recorder(
        tone(tone_hz, tone_seconds, TONE_AMPLITUDE), round(TAIL_SECONDS * SAMPLE_RATE), loop
    )
    card.start(recorder)
    try:
        # The card's clock ends the test; the deadline only catches a card that stopped.
        deadline = loop.time() + give_up_seconds
        while not recorder.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.done.wait(), timeout=CHECK_SECONDS)
            problem = recorder.problem or card.check()
            if problem is None and loop.time() > deadline and not recorder.done.is_set():
                problem = "the sound card did not play the tone"
            if problem is not None:
                raise AudioError(f"the audio test failed: {problem}")
    finally:
        card.stop()
    heard = np.concatenate(recorder.heard) if recorder.heard else np.zeros(0, dtype=np.int16)
    return SelfTestResult(
        input_name=card.input_name,
        output_name=card.output_name,
        tone_hz=tone_hz,
        tone_seconds=tone_seconds,
        rms_dbfs=to_dbfs(rms(heard)),
        peak_dbfs=to_dbfs(peak(heard)),
        tone_dbfs=to_dbfs(level_at(heard.astype(np.float64) / INT16_FULL_SCALE, tone_hz)),
        captured_seconds=len(heard) / SAMPLE_RATE,
    )
