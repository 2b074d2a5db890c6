"""How long to wait before the next reconnection attempt: exponential, capped, full jitter.

Full jitter (a uniform pick between zero and the current ceiling) spreads out the boxes of a
whole region that lost the server at the same moment, so they do not all knock again at once.

    backoff = Backoff()
    delay = backoff.next_delay()   # 0 … 0.5 s, then 0 … 1 s, 0 … 2 s, … never above 30 s
    backoff.reset()                # after a connection that stayed up
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_DOUBLINGS = 30  # 0.5 s · 2**30 is far past any cap; stops the power from growing forever


@dataclass
class Backoff:
    first: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError("backoff needs 0 < first <= cap")

    def ceiling(self) -> float:
        """The longest the next wait may be."""
        return min(self.cap, self.first * 2.0 ** min(self.attempt, _MAX_DOUBLINGS))

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
