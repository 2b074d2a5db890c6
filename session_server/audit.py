"""The audit log: who joined, when, from where, how the link was routed. Never content or secrets.

Rows are only ever added (the database refuses updates and deletes).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import structlog

from session_server.db.engine import DbSession
from session_server.db.models import AuditEntry

log = structlog.get_logger("twm.audit")


class AuditEvent(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_IN_REFUSED = "sign_in_refused"
    DEVICE_CONNECTED = "device_connected"
    DEVICE_REFUSED = "device_refused"
    DISCONNECTED = "disconnected"
    JOIN = "join"
    JOIN_REFUSED = "join_refused"
    LEAVE = "leave"
    LINK_UP = "link_up"
    LINK_DOWN = "link_down"
    KICKED = "kicked"
    ADMIN = "admin"
    ADMIN_REFUSED = "admin_refused"


async def record(
    db: DbSession,
    event: AuditEvent,
    *,
    actor: str,
    room: str | None = None,
    remote: str | None = None,
    **detail: Any,
) -> None:
    """Add one row and commit it; also log it (the journal keeps a copy)."""
    db.add(AuditEntry(event=event.value, actor=actor, room=room, remote=remote, detail=detail))
    await db.commit()
    log.info(event.value, actor=actor, room=room, remote=remote, **detail)
