"""A sliding-window limit on attempts per key (e.g. access-code sign-ins per address)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class AttemptLimiter:
    """At most ``limit`` attempts per ``period`` seconds for each key.

    >>> clock = iter([0.0, 1.0, 2.0, 61.0]).__next__
    >>> limiter = AttemptLimiter(limit=2, period=60.0, clock=clock)
    >>> [limiter.allow("1.2.3.4") for _ in range(4)]
    [True, True, False, True]
    """

    def __init__(self, limit: int, period: float, clock: Callable[[], float]) -> None:
        self._limit = limit
        self._period = period
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        attempts = self._attempts.setdefault(key, deque())
        while attempts and attempts[0] <= now - self._period:
            attempts.popleft()
        if len(attempts) >= self._limit:
            return False
        attempts.append(now)
        if len(self._attempts) > 10_000:
            self._forget_idle(now)
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until the next attempt for ``key`` will be allowed."""
        attempts = self._attempts.get(key)
        if not attempts or len(attempts) < self._limit:
            return 0.0
        return max(0.0, attempts[0] + self._period - self._clock())

    def _forget_idle(self, now: float) -> None:
        # Bounded memory under a spray of addresses: drop keys with no recent attempt.
        for key in [k for k, v in self._attempts.items() if not v or v[-1] <= now - self._period]:
            del self._attempts[key]
