"""What the status light looks like in each state, and for a reaction from the other side.

Nothing needs reading on the box (DESIGN.md, "The box, screen-free"): each state has a pattern a
person can tell apart from across a room. The table ``PATTERNS`` is the whole design; ``frames``
turns a pattern into the brightness levels the light shows, one every ``TICK`` seconds, which
``Lights`` hands to gpiozero to play on its own thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import cycle
from types import MappingProxyType

from device.lifecycle.states import State
from session_server.protocol import ReactionKind

# Seconds per frame: 25 frames a second, as gpiozero's own fades use; smooth to the eye.
TICK = 0.04


@dataclass(frozen=True)
class Steady:
    """One brightness, held."""

    level: float


@dataclass(frozen=True)
class Blink:
    """On at ``level`` for ``on`` seconds, off for ``off`` seconds, forever."""

    on: float
    off: float
    level: float = 1.0


@dataclass(frozen=True)
class Pulse:
    """Fades from ``low`` up to ``high`` and back, once every ``period`` seconds, forever."""

    period: float
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class Flashes:
    """``count`` bright flashes ``gap`` seconds apart, then dark for ``pause`` seconds; forever."""

    count: int
    on: float
    gap: float
    pause: float


@dataclass(frozen=True)
class FadeOut:
    """Bright, fading to off over ``seconds``, once; then off."""

    seconds: float


@dataclass(frozen=True)
class Burst:
    """A short, finite sequence of (brightness, seconds): a reaction's flash."""

    steps: tuple[tuple[float, float], ...]


Pattern = Steady | Blink | Pulse | Flashes | FadeOut | Burst

# fmt: off
PATTERNS: Mapping[State, Pattern] = MappingProxyType({
    # state               pattern                                          a person sees
    State.OFFLINE:        Blink(on=0.5, off=2.5, level=0.3),             # slow dim blink: asleep
    State.IDLE:           Steady(0.15),                                  # dim, still: ready
    State.SESSION_SOON:   Pulse(period=3.0, low=0.05),                   # slow glow: press START
    State.WAITING:        Pulse(period=1.0, low=0.2, high=0.8),          # gentle quick pulse
    State.CONNECTING:     Blink(on=0.25, off=0.25),                      # quick blink
    State.LIVE:           Steady(1.0),                                   # bright, still: on air
    State.RECONNECTING:   Blink(on=0.08, off=0.12),                      # fast flicker
    State.ENDED:          FadeOut(seconds=2.5),                          # one slow fade, then off
    State.FAULT:          Flashes(count=2, on=0.15, gap=0.15, pause=1.2),  # double flash, again
})

# A dark edge either side, so that the flash shows even on LIVE's steady bright light.
REACTION_FLASHES: Mapping[ReactionKind, Burst] = MappingProxyType({
    ReactionKind.CLAP:  Burst(((0.0, 0.1), (1.0, 0.1), (0.0, 0.1), (1.0, 0.1), (0.0, 0.1))),
    ReactionKind.HEART: Burst(((0.0, 0.1), (1.0, 0.4), (0.0, 0.1))),
    ReactionKind.WAVE:  Burst(((0.0, 0.1),) + ((1.0, 0.08), (0.0, 0.08)) * 3),
})
# fmt: on


def frames(pattern: Pattern, tick: float = TICK) -> Iterator[float]:
    """The brightness levels (0…1) of ``pattern``, each shown for ``tick`` seconds.

    Endless for repeating patterns; ``Steady``, ``FadeOut`` and ``Burst`` end, and the light
    keeps their last level.
    """
    match pattern:
        case Steady(level):
            return iter((level,))
        case Blink(on, off, level):
            return cycle(_hold(level, on, tick) + _hold(0.0, off, tick))
        case Pulse(period, low, high):
            steps = _count(period / 2, tick)
            up = [low + (high - low) * i / steps for i in range(steps)]
            down = [high - (high - low) * i / steps for i in range(steps)]
            return cycle(up + down)
        case Flashes(count, on, gap, pause):
            one: list[float] = []
            for flash in range(count):
                one += _hold(1.0, on, tick) + _hold(0.0, gap if flash < count - 1 else pause, tick)
            return cycle(one)
        case FadeOut(seconds):
            steps = _count(seconds, tick)
            return iter([1.0 - i / steps for i in range(steps)] + [0.0])
        case Burst(burst):
            return iter(
                [frame for level, seconds in burst for frame in _hold(level, seconds, tick)]
            )


def _count(seconds: float, tick: float) -> int:
    return max(1, round(seconds / tick))


def _hold(level: float, seconds: float, tick: float) -> list[float]:
    return [level] * _count(seconds, tick)
