"""The reconnection backoff: doubling ceilings from 0.5 s to a 30 s cap, full jitter, reset."""

from __future__ import annotations

import random

import pytest

from device.net.backoff import Backoff


def test_waits_double_from_half_a_second_up_to_the_cap() -> None:
    backoff = Backoff(rng=random.Random(7))
    ceilings = []
    for _ in range(10):
        ceilings.append(backoff.ceiling())
        backoff.next_delay()
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_every_wait_is_a_full_jitter_pick_below_its_ceiling() -> None:
    backoff = Backoff(rng=random.Random(1))
    for _ in range(7):  # up to the cap
        backoff.next_delay()
    delays = [backoff.next_delay() for _ in range(500)]
    assert all(0.0 <= d <= 30.0 for d in delays)
    # Full jitter spreads over the whole range, not just around the ceiling.
    assert min(delays) < 3.0 and max(delays) > 27.0


def test_reset_starts_again_from_the_shortest_wait() -> None:
    backoff = Backoff(rng=random.Random(3))
    for _ in range(20):
        backoff.next_delay()
    backoff.reset()
    assert backoff.ceiling() == 0.5
    assert backoff.next_delay() <= 0.5


def test_a_very_long_outage_never_overflows() -> None:
    backoff = Backoff(rng=random.Random(5), attempt=10_000)
    assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(("first", "cap"), [(0.0, 30.0), (5.0, 1.0), (-1.0, 30.0)])
def test_nonsense_limits_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first"):
        Backoff(first=first, cap=cap)
