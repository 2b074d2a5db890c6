"""A server clock that starts at a chosen moment and then runs with real time.

A box aligns its clock to the server's at every welcome. With the server's clock standing still
(``FixedClock``), a box whose signalling reconnects would see its time jump back to the same
moment each time, and its timers (link retries, the "ended" display) would stall: something a
real server never does. Tests that reconnect boxes use this clock instead.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from session_server.clock import FixedClock


class RunningClock(FixedClock):
    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self._started = time.monotonic()

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=time.monotonic() - self._started)

    def set(self, at: datetime) -> None:
        super().set(at)
        self._started = time.monotonic()
