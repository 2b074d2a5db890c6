"""Who a presented credential belongs to: a device token → its box, a ticket → its school."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from session_server.context import ServerContext
from session_server.credentials import digest
from session_server.db.engine import DbSession
from session_server.db.models import AccessCode, Device
from session_server.protocol import Party, PartyKind
from session_server.tickets import TicketError, verify


@dataclass(frozen=True)
class SchoolPage:
    party: Party
    access_code_id: int
    expires_at: datetime


async def school_from_ticket(context: ServerContext, db: DbSession, ticket_text: str) -> SchoolPage:
    """The school a ticket speaks for; raises ``TicketError`` if bad, expired or revoked."""
    ticket = verify(ticket_text, context.ticket_key, context.clock.now())
    code = await db.get(AccessCode, ticket.access_code_id)
    if code is None or code.school_id != ticket.school_id:
        raise TicketError("the ticket is not valid: sign in again")
    if code.revoked_at is not None:
        raise TicketError("this access code was withdrawn: ask your coordinator for a new one")
    party = Party(kind=PartyKind.SCHOOL, id=code.school.id, name=code.school.name)
    return SchoolPage(party=party, access_code_id=code.id, expires_at=ticket.expires_at)


async def device_from_token(db: DbSession, token: str) -> Device | None:
    """The device row for a token, revoked or not (the caller decides what revoked means)."""
    return await db.scalar(select(Device).where(Device.token_hash == digest(token)))


def party_of(device: Device) -> Party:
    if device.care_home is not None:
        return Party(kind=PartyKind.CARE_HOME, id=device.care_home.id, name=device.care_home.name)
    if device.school is not None:
        return Party(kind=PartyKind.SCHOOL, id=device.school.id, name=device.school.name)
    raise ValueError(f"device {device.id} belongs to neither a care home nor a school")
