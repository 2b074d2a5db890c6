"""Every cue: there, short, soft at both ends, well below full scale, and unlike the others."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from device.audio.cues import PEAK, cue_sound
from device.audio.format import SAMPLE_RATE, ms_to_samples
from device.lifecycle.states import Cue


@pytest.mark.parametrize("cue", list(Cue))
def test_each_cue_is_short_soft_edged_and_well_below_full_scale(cue: Cue) -> None:
    sound = cue_sound(cue)
    assert sound.dtype == np.float32
    assert 0.02 * SAMPLE_RATE < len(sound) < 1.0 * SAMPLE_RATE
    assert 0.1 < np.max(np.abs(sound)) <= PEAK + 1e-6
    assert PEAK <= 0.5  # -6 dBFS at most: room for the call audio underneath
    # No click: it fades in from and out to silence, and never jumps between samples.
    edge = ms_to_samples(1)
    assert np.max(np.abs(sound[:edge])) < 0.05
    assert np.max(np.abs(sound[-edge:])) < 0.05
    assert sound[0] == 0.0
    assert abs(sound[-1]) < 1e-3
    assert np.max(np.abs(np.diff(sound))) < 0.1


def test_cues_are_made_once_and_cannot_be_changed() -> None:
    sound = cue_sound(Cue.JOINED)
    assert cue_sound(Cue.JOINED) is sound
    with pytest.raises(ValueError):
        sound[0] = 1.0


def _spectrum(sound: np.ndarray) -> np.ndarray:
    padded = np.zeros(SAMPLE_RATE, dtype=np.float64)
    padded[: len(sound)] = sound
    magnitude = np.abs(np.fft.rfft(padded))[:4000]  # 1 Hz bins up to 4 kHz
    normalised: np.ndarray = magnitude / np.linalg.norm(magnitude)
    return normalised


def _contour(sound: np.ndarray) -> list[int]:
    """The loudest pitch in each 40 ms slice, to the nearest semitone: the cue's melody."""
    notes = []
    size = ms_to_samples(40)
    for start in range(0, len(sound) - size + 1, size):
        piece = sound[start : start + size] * np.hanning(size)
        if np.max(np.abs(piece)) < 0.02:
            continue
        spectrum = np.abs(np.fft.rfft(piece, n=SAMPLE_RATE))
        hz = int(np.argmax(spectrum[50:4000])) + 50
        notes.append(round(12 * np.log2(hz / 440)))
    return notes


def test_no_two_cues_sound_alike() -> None:
    for one, other in itertools.combinations(list(Cue), 2):
        a, b = cue_sound(one), cue_sound(other)
        same_length = abs(len(a) - len(b)) < ms_to_samples(30)
        same_melody = _contour(a) == _contour(b)
        similarity = float(np.dot(_spectrum(a), _spectrum(b)))
        assert not (same_length and same_melody and similarity > 0.9), (one, other)


def test_rising_cues_rise_and_falling_cues_fall() -> None:
    for cue in (Cue.JOINED, Cue.CONNECTED, Cue.UNMUTED):
        melody = _contour(cue_sound(cue))
        assert melody[-1] > melody[0], cue
    for cue in (Cue.ENDED, Cue.MUTED, Cue.PROBLEM):
        melody = _contour(cue_sound(cue))
        assert melody[-1] < melody[0], cue
