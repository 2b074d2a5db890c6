"""Time for the box: the server's idea of now (windows are the server's), and a monotonic clock.

A box whose own clock is wrong must still open its window when the server says so, so ``now()``
is the system clock corrected by the offset measured from the server's Welcome.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class ServerClock:
    """The system clock, corrected to the server's once it has told us its time."""

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        return time.monotonic()

    def align(self, server_time: datetime) -> None:
        """Adopt the server's time (the message's travel time, milliseconds, does not matter)."""
        self._offset = server_time - datetime.now(UTC)

    @property
    def offset(self) -> timedelta:
        return self._offset
