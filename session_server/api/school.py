"""The school page's API: sign in with an access code, then list today's sessions.

POST /api/school/sign-in   {"code": "K7QM-3XWD-PA9T"}  → a short-lived ticket
GET  /api/school/sessions  Authorization: Bearer <ticket>
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select

from session_server import tickets
from session_server.access import may_enter
from session_server.api.deps import Context, Db, SchoolParty
from session_server.audit import AuditEvent, record
from session_server.credentials import digest, normalise_access_code
from session_server.db.models import AccessCode
from session_server.protocol import Occurrence, Party, PartyKind
from session_server.schedule import expand, sessions_of

router = APIRouter()


class SignIn(BaseModel):
    code: str = Field(min_length=1, max_length=64)


class SignedIn(BaseModel):
    ticket: str
    school: Party
    expires_at: AwareDatetime


class SchoolOccurrence(Occurrence):
    can_join: bool
    refusal: str | None
    day_local: str
    starts_local: str
    ends_local: str


class SchoolSessions(BaseModel):
    school: Party
    now: AwareDatetime
    occurrences: list[SchoolOccurrence]


def _remote(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/sign-in")
async def sign_in(body: SignIn, request: Request, context: Context, db: Db) -> SignedIn:
    remote = _remote(request)
    limiter = context.sign_in_limiter
    if not limiter.allow(remote):
        wait = math.ceil(limiter.retry_after(remote))
        await record(
            db,
            AuditEvent.SIGN_IN_REFUSED,
            actor="school page",
            remote=remote,
            reason="rate_limited",
        )
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"Too many attempts: wait {wait} seconds and try again.",
            headers={"Retry-After": str(wait)},
        )
    code = await db.scalar(
        select(AccessCode).where(AccessCode.code_hash == digest(normalise_access_code(body.code)))
    )
    if code is None or code.revoked_at is not None:
        reason = "unknown_code" if code is None else "revoked_code"
        await record(
            db, AuditEvent.SIGN_IN_REFUSED, actor="school page", remote=remote, reason=reason
        )
        message = (
            "That access code is not valid. Check it and try again, or ask your coordinator."
            if code is None
            else "That access code has been withdrawn. Ask your coordinator for a new one."
        )
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, message)
    school = Party(kind=PartyKind.SCHOOL, id=code.school.id, name=code.school.name)
    expires_at = context.clock.now() + timedelta(minutes=context.settings.ticket_minutes)
    ticket = tickets.issue(tickets.Ticket(school.id, code.id, expires_at), context.ticket_key)
    await record(
        db, AuditEvent.SIGN_IN, actor=f"school:{school.id}", remote=remote, access_code_id=code.id
    )
    return SignedIn(ticket=ticket, school=school, expires_at=expires_at)


@router.get("/sessions")
async def todays_sessions(school: SchoolParty, context: Context, db: Db) -> SchoolSessions:
    """The rest of today's occurrences (local day), each saying whether Join is open and why not."""
    zone = context.settings.zone
    now = context.clock.now()
    local_now = now.astimezone(zone)
    end_of_day = datetime.combine(local_now.date() + timedelta(days=1), datetime.min.time(), zone)
    found = expand(await sessions_of(db, school), now, end_of_day, context.window)
    shown = []
    for occurrence in found:
        refusal = may_enter(school, occurrence, cancelled=False, now=now, zone=zone)
        starts = occurrence.starts_at.astimezone(zone)
        shown.append(
            SchoolOccurrence(
                **occurrence.model_dump(),
                can_join=refusal is None,
                refusal=refusal.message if refusal else None,
                day_local=f"{starts:%A} {starts.day} {starts:%B}",
                starts_local=f"{starts:%H:%M}",
                ends_local=f"{occurrence.ends_at.astimezone(zone):%H:%M}",
            )
        )
    return SchoolSessions(school=school, now=now, occurrences=shown)
