"""The status light's patterns: one for every state, each one unlike the others."""

from __future__ import annotations

from itertools import groupby, islice

import pytest

from device.controls.patterns import (
    PATTERNS,
    REACTION_FLASHES,
    TICK,
    Blink,
    Burst,
    FadeOut,
    Flashes,
    Pulse,
    Steady,
    frames,
)
from device.lifecycle.states import State
from session_server.protocol import ReactionKind

# Long enough for every repeating pattern to go round more than once.
WINDOW = round(8.0 / TICK)


def runs(levels: list[float]) -> list[tuple[float, int]]:
    """(level, how many frames in a row) — what the eye sees, step by step."""
    return [(level, len(list(same))) for level, same in groupby(levels)]


def test_every_state_has_a_pattern() -> None:
    assert set(PATTERNS) == set(State)


def test_every_reaction_has_a_flash() -> None:
    assert set(REACTION_FLASHES) == set(ReactionKind)


def test_no_two_states_share_a_pattern() -> None:
    assert len(set(PATTERNS.values())) == len(PATTERNS)


def test_no_two_states_look_alike_on_the_light() -> None:
    seen = {state: tuple(islice(frames(pattern), WINDOW)) for state, pattern in PATTERNS.items()}
    assert len(set(seen.values())) == len(seen)


def test_no_two_reactions_look_alike_on_the_light() -> None:
    seen = {kind: tuple(frames(flash)) for kind, flash in REACTION_FLASHES.items()}
    assert len(set(seen.values())) == len(seen)


@pytest.mark.parametrize("state", list(State))
def test_every_level_is_a_valid_brightness(state: State) -> None:
    assert all(0.0 <= level <= 1.0 for level in islice(frames(PATTERNS[state]), WINDOW))


def test_a_steady_light_is_one_level_that_stays() -> None:
    assert list(frames(Steady(0.15))) == [0.15]


def test_a_blink_alternates_its_level_and_dark_for_its_times() -> None:
    seen = runs(list(islice(frames(Blink(on=0.2, off=0.4, level=0.3), tick=0.1), 18)))
    assert seen == [(0.3, 2), (0.0, 4)] * 3


def test_a_pulse_rises_from_low_to_high_and_falls_back_each_period() -> None:
    levels = list(islice(frames(Pulse(period=1.0, low=0.2, high=0.8), tick=0.1), 20))
    up, down = levels[:5], levels[5:10]
    assert up == sorted(up) and up[0] == pytest.approx(0.2)
    assert down == sorted(down, reverse=True) and down[0] == pytest.approx(0.8)
    assert levels[10:] == levels[:10]


def test_flashes_come_in_groups_then_a_pause() -> None:
    pattern = Flashes(count=2, on=0.1, gap=0.1, pause=0.5)
    seen = runs(list(islice(frames(pattern, tick=0.1), 16)))
    assert seen == [(1.0, 1), (0.0, 1), (1.0, 1), (0.0, 5)] * 2


def test_a_fade_out_goes_once_from_bright_to_off_and_ends() -> None:
    levels = list(frames(FadeOut(seconds=1.0), tick=0.1))
    assert levels[0] == 1.0 and levels[-1] == 0.0
    assert levels == sorted(levels, reverse=True)
    assert len(levels) == 11


def test_a_burst_plays_its_steps_once() -> None:
    levels = list(frames(Burst(((0.0, 0.1), (1.0, 0.3))), tick=0.1))
    assert levels == [0.0, 1.0, 1.0, 1.0]


def test_a_reaction_flash_is_bright_between_dark_edges() -> None:
    # Dark edges make the flash show on LIVE's steady bright light too.
    for flash in REACTION_FLASHES.values():
        levels = list(frames(flash))
        assert levels[0] == 0.0 and levels[-1] == 0.0 and 1.0 in levels
