"""The lights, through gpiozero's mock PWM pins: each state's pattern reaches the status light's
pin, a reaction's flash returns to the pattern, and the ON-AIR pin is exactly on or off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from itertools import chain, islice

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.controls import Lights
from device.controls.patterns import (
    PATTERNS,
    REACTION_FLASHES,
    TICK,
    Blink,
    Flashes,
    Pattern,
    Pulse,
    frames,
)
from device.lifecycle.states import State
from device.settings import PinSettings
from session_server.protocol import ReactionKind
from tests.waiting import until


def changes(start: float, levels: Iterable[float]) -> list[float]:
    """The levels a pin at ``start`` changes to when shown ``levels`` (a mock pin records only
    changes)."""
    seen: list[float] = []
    last = start
    for level in levels:
        if level != last:
            seen.append(level)
            last = level
    return seen


def once_round(pattern: Pattern) -> Iterator[float]:
    """A repeating pattern's frames once round and into the next, to see it repeat; a pattern
    that ends, whole."""
    match pattern:
        case Blink(on, off, _):
            seconds = on + off
        case Pulse(period, _, _):
            seconds = period
        case Flashes(count, on, gap, pause):
            seconds = count * on + (count - 1) * gap + pause
        case _:
            return frames(pattern)
    return islice(frames(pattern), round(seconds / TICK) + 2)


def history(pin: MockPWMPin) -> list[float]:
    return [change.state for change in pin.states]


def contains_run(seen: list[float], run: list[float]) -> bool:
    return any(seen[i : i + len(run)] == run for i in range(len(seen) - len(run) + 1))


@pytest.fixture
def lights(pins: PinSettings, factory: MockFactory) -> Iterator[Lights]:
    lights = Lights(pins, factory)
    yield lights
    lights.close()


@pytest.fixture
def status(pins: PinSettings, factory: MockFactory, lights: Lights) -> MockPWMPin:
    return factory.pin(pins.status_light)


@pytest.fixture
def on_air(pins: PinSettings, factory: MockFactory, lights: Lights) -> MockPWMPin:
    return factory.pin(pins.on_air_light)


@pytest.mark.parametrize("state", list(State))
async def test_each_state_plays_its_pattern_on_the_status_light(
    state: State, lights: Lights, status: MockPWMPin
) -> None:
    status.clear_states()
    start = status.state
    lights.show(state)
    want = changes(start, once_round(PATTERNS[state]))
    await until(lambda: len(status.states) > len(want))
    assert history(status)[1 : len(want) + 1] == want


@pytest.mark.parametrize("state", [State.IDLE, State.LIVE, State.ENDED])
async def test_a_pattern_that_ends_keeps_its_last_level(
    state: State, lights: Lights, status: MockPWMPin
) -> None:
    status.clear_states()
    start = status.state
    lights.show(state)
    want = changes(start, frames(PATTERNS[state]))
    await until(lambda: len(status.states) > len(want))
    await asyncio.sleep(10 * TICK)
    assert history(status)[1:] == want


async def test_a_new_state_stops_the_last_pattern(lights: Lights, status: MockPWMPin) -> None:
    lights.show(State.RECONNECTING)
    await until(lambda: len(status.states) > 4)
    lights.show(State.LIVE)
    await until(lambda: status.state == 1.0)
    status.clear_states()
    await asyncio.sleep(10 * TICK)  # RECONNECTING would have flickered several times by now
    assert history(status) == [1.0]


async def test_a_reaction_flashes_then_the_steady_pattern_returns(
    lights: Lights, status: MockPWMPin
) -> None:
    lights.show(State.LIVE)
    await until(lambda: status.state == 1.0)
    status.clear_states()
    lights.flash_reaction(ReactionKind.CLAP)
    want = changes(1.0, chain(frames(REACTION_FLASHES[ReactionKind.CLAP]), [1.0]))
    await until(lambda: len(status.states) > len(want))
    await asyncio.sleep(10 * TICK)
    assert want[:4] == [0.0, 1.0, 0.0, 1.0]  # the flash shows on a bright light
    assert history(status)[1:] == want
    assert status.state == 1.0


async def test_a_reaction_flashes_then_a_repeating_pattern_starts_again(
    lights: Lights, status: MockPWMPin
) -> None:
    lights.show(State.WAITING)
    lights.flash_reaction(ReactionKind.HEART)
    flash = list(frames(REACTION_FLASHES[ReactionKind.HEART]))
    want = changes(flash[0], chain(flash, once_round(PATTERNS[State.WAITING])))
    await until(lambda: contains_run(history(status), want))


async def test_the_on_air_light_is_exactly_on_or_off(
    lights: Lights, on_air: MockPWMPin, status: MockPWMPin
) -> None:
    on_air.clear_states()
    assert on_air.state == 0
    lights.set_on_air(True)
    assert on_air.state == 1
    # The status light's patterns never touch it.
    lights.show(State.FAULT)
    await until(lambda: len(status.states) > 4)
    assert on_air.state == 1
    lights.set_on_air(False)
    assert on_air.state == 0
    lights.set_on_air(False)
    assert history(on_air) == [0, 1, 0]


async def test_close_turns_both_lights_off(
    lights: Lights, on_air: MockPWMPin, status: MockPWMPin
) -> None:
    lights.show(State.LIVE)
    lights.set_on_air(True)
    await until(lambda: status.state == 1.0)
    lights.close()
    assert (status.state, on_air.state) == (0, 0)
    lights.close()  # twice is harmless
