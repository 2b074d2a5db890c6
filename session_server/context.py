"""What every request handler and the signalling hub share: settings, database, clock, hub."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from session_server.clock import Clock
from session_server.db.engine import DbSession
from session_server.ratelimit import AttemptLimiter
from session_server.schedule import Window
from session_server.settings import ServerSettings


@dataclass
class ServerContext:
    settings: ServerSettings
    engine: AsyncEngine
    db: async_sessionmaker[DbSession]
    clock: Clock
    ticket_key: bytes
    sign_in_limiter: AttemptLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.sign_in_limiter = AttemptLimiter(
            limit=self.settings.sign_in_attempts_per_minute, period=60.0, clock=time.monotonic
        )

    @property
    def window(self) -> Window:
        return Window(before=self.settings.window_before, after=self.settings.window_after)
