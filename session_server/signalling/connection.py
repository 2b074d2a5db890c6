"""One authenticated signalling connection, with its own outbox.

Sends never block the sender's loop: a message for a peer is queued and a writer task drains the
queue onto the socket, so one slow or stalled client cannot hold up a relay between two others.
A client that lets its outbox fill is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from session_server.protocol import Party, encode

OUTBOX_LIMIT = 256
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class Connection:
    party: Party
    actor: str
    remote: str
    device_id: int | None = None
    access_code_id: int | None = None
    expires_at: datetime | None = None  # a school page's ticket runs out; a device's never
    room: str | None = None
    _outbox: asyncio.Queue[str | _Close] = field(
        default_factory=lambda: asyncio.Queue(maxsize=OUTBOX_LIMIT)
    )
    _closing: bool = False

    def send(self, message: BaseModel) -> None:
        """Queue a message; never waits."""
        if self._closing:
            return
        try:
            self._outbox.put_nowait(encode(message))
        except asyncio.QueueFull:
            self._closing = True
            # Make room for the close frame: the queued messages are stale anyway.
            while not self._outbox.empty():
                self._outbox.get_nowait()
            self._outbox.put_nowait(_Close(CLOSE_TRY_AGAIN_LATER, "too slow to keep up"))

    def close(self, code: int, reason: str) -> None:
        """Close after what is already queued (e.g. the error that explains why) is sent."""
        if self._closing:
            return
        self._closing = True
        try:
            self._outbox.put_nowait(_Close(code, reason))
        except asyncio.QueueFull:
            while not self._outbox.empty():
                self._outbox.get_nowait()
            self._outbox.put_nowait(_Close(code, reason))

    @property
    def closing(self) -> bool:
        return self._closing

    async def run_writer(
        self,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
    ) -> None:
        """Drain the outbox onto the socket until a close is queued."""
        while True:
            item = await self._outbox.get()
            if isinstance(item, _Close):
                await close(item.code, item.reason)
                return
            await send_text(item)
