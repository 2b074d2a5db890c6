"""The mixer: call audio at the volume, cues added on top (never instead), a soft limit, and a
volume curve whose bottom step still lets the cues through."""

from __future__ import annotations

import numpy as np
import pytest

from device.audio.cues import cue_sound
from device.audio.format import BLOCK_FRAMES
from device.audio.mixer import (
    CEILING,
    CUE_FLOOR_LEVEL,
    KNEE,
    MAX_VOICES,
    Mixer,
    cue_gain,
    soft_limit,
    volume_gain,
)
from device.lifecycle.machine import VOLUME_STEPS
from device.lifecycle.states import Cue


def steady(value: int) -> np.ndarray:
    return np.full(BLOCK_FRAMES, value, dtype=np.int16)


def render(mixer: Mixer, call: np.ndarray) -> np.ndarray:
    out = np.empty(len(call), dtype=np.float32)
    mixer.render(call, out)
    return out


def test_volume_steps_are_even_in_decibels_from_minus_30_to_full() -> None:
    gains = [volume_gain(level) for level in range(VOLUME_STEPS + 1)]
    assert gains[0] == 0.0
    assert gains[1] == pytest.approx(10 ** (-30 / 20))
    assert gains[VOLUME_STEPS] == pytest.approx(1.0)
    steps_db = np.diff(20 * np.log10(gains[1:]))
    assert np.allclose(steps_db, 30 / 9)
    with pytest.raises(ValueError):
        volume_gain(VOLUME_STEPS + 1)
    with pytest.raises(ValueError):
        volume_gain(-1)


def test_cues_follow_the_volume_but_never_fall_below_the_floor() -> None:
    assert cue_gain(0) == cue_gain(1) == cue_gain(CUE_FLOOR_LEVEL) > 0
    assert cue_gain(VOLUME_STEPS) == pytest.approx(1.0)
    assert cue_gain(CUE_FLOOR_LEVEL + 1) > cue_gain(CUE_FLOOR_LEVEL)


def test_call_audio_is_scaled_by_the_volume() -> None:
    mixer = Mixer(level=VOLUME_STEPS)
    loud = render(mixer, steady(8192))
    assert np.allclose(loud, 0.25)
    mixer.set_volume(4)
    assert np.allclose(render(mixer, steady(8192)), 0.25 * volume_gain(4))
    mixer.set_volume(0)
    assert not render(mixer, steady(8192)).any()


def test_a_cue_is_added_to_the_call_audio_which_keeps_playing() -> None:
    mixer = Mixer(level=6)
    call = (np.sin(np.arange(BLOCK_FRAMES) / 7) * 6000).astype(np.int16)
    alone = render(mixer, call)
    cue = cue_sound(Cue.REACTION)
    mixer.play(cue)
    blocks = []
    for _ in range(len(cue) // BLOCK_FRAMES + 2):
        blocks.append(render(mixer, call))
    together = np.concatenate(blocks)
    expected_cue = np.zeros_like(together)
    expected_cue[: len(cue)] = cue * cue_gain(6)
    # Nothing here reaches the knee, so the mix is an exact sum: call + cue.
    assert np.allclose(together, np.tile(alone, len(blocks)) + expected_cue, atol=1e-6)
    assert mixer.playing == 0  # the cue finished and let go


def test_at_volume_zero_the_call_is_silent_but_a_press_is_still_heard() -> None:
    mixer = Mixer(level=0)
    tick = cue_sound(Cue.VOLUME)
    mixer.play(tick)
    blocks = [render(mixer, steady(20000)) for _ in range(len(tick) // BLOCK_FRAMES + 1)]
    assert np.max(np.abs(np.concatenate(blocks))) > 0.005  # faint, but there
    assert not render(mixer, steady(20000)).any()  # the tick is over: only silence remains


def test_the_sum_never_reaches_full_scale_and_quiet_sound_is_untouched() -> None:
    mixer = Mixer(level=VOLUME_STEPS)
    for _ in range(MAX_VOICES):
        mixer.play(cue_sound(Cue.CONNECTED))
    out = np.concatenate([render(mixer, steady(32767)) for _ in range(20)])
    assert np.max(np.abs(out)) <= CEILING < 1.0
    assert np.max(np.abs(out)) > KNEE  # bent, not cut to the knee

    quiet = np.linspace(-KNEE, KNEE, 1001, dtype=np.float32)
    limited = quiet.copy()
    soft_limit(limited)
    assert np.array_equal(limited, quiet)
    loud = np.linspace(-4, 4, 1001, dtype=np.float32)
    soft_limit(loud)
    assert np.all(np.diff(loud) >= 0)  # still in order: no folding, no flat cut
    assert np.max(np.abs(loud)) <= CEILING


def test_no_more_than_a_few_cues_sound_at_once() -> None:
    mixer = Mixer()
    for _ in range(3 * MAX_VOICES):
        mixer.play(cue_sound(Cue.VOLUME))
    assert mixer.playing == MAX_VOICES
