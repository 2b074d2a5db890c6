"""A party's schedule: the occurrences of its sessions, with their windows, from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from session_server.db.engine import DbSession
from session_server.db.models import Pairing
from session_server.db.models import Session as SessionRow
from session_server.protocol import Occurrence, Party, PartyKind, parse_room, room_id
from session_server.recurrence import Recurrence


@dataclass(frozen=True)
class Window:
    """How long before its start a session's room opens, and how long after its end it closes."""

    before: timedelta
    after: timedelta


def recurrence_of(session: SessionRow) -> Recurrence:
    return Recurrence(
        session.starts_local, session.timezone, session.duration_minutes, session.rrule
    )


def parties_of(session: SessionRow) -> tuple[Party, Party]:
    pairing = session.pairing
    return (
        Party(kind=PartyKind.CARE_HOME, id=pairing.care_home.id, name=pairing.care_home.name),
        Party(kind=PartyKind.SCHOOL, id=pairing.school.id, name=pairing.school.name),
    )


def occurrence(session: SessionRow, starts_at: datetime, window: Window) -> Occurrence:
    care_home, school = parties_of(session)
    ends_at = starts_at + timedelta(minutes=session.duration_minutes)
    return Occurrence(
        room=room_id(session.id, starts_at),
        session_id=session.id,
        title=session.title,
        starts_at=starts_at,
        ends_at=ends_at,
        window_opens_at=starts_at - window.before,
        window_closes_at=ends_at + window.after,
        care_home=care_home,
        school=school,
    )


def is_cancelled(session: SessionRow, starts_at: datetime) -> bool:
    return any(c.occurrence_starts_at == starts_at for c in session.cancellations)


def expand(
    sessions: list[SessionRow], start: datetime, end: datetime, window: Window
) -> list[Occurrence]:
    """Occurrences whose window overlaps [start, end), cancelled ones left out, soonest first."""
    found: list[Occurrence] = []
    for session in sessions:
        duration = timedelta(minutes=session.duration_minutes)
        # An occurrence still matters while its window is open, so look back past its length.
        lookback = duration + window.after
        for starts_at in recurrence_of(session).starts_between(
            start - lookback, end + window.before
        ):
            if not is_cancelled(session, starts_at):
                found.append(occurrence(session, starts_at, window))
    found.sort(key=lambda o: (o.starts_at, o.session_id))
    return found


async def sessions_of(db: DbSession, party: Party | None = None) -> list[SessionRow]:
    """Sessions of one party (or all, for coordinators)."""
    query = select(SessionRow).join(Pairing)
    if party is not None and party.kind is PartyKind.CARE_HOME:
        query = query.where(Pairing.care_home_id == party.id)
    elif party is not None:
        query = query.where(Pairing.school_id == party.id)
    return list((await db.scalars(query.order_by(SessionRow.id))).unique())


async def schedule_for(
    db: DbSession, party: Party, now: datetime, horizon: timedelta, window: Window
) -> list[Occurrence]:
    """What a party is told: occurrences from now (including open windows) to the horizon."""
    return expand(await sessions_of(db, party), now, now + horizon, window)


@dataclass(frozen=True)
class RoomLookup:
    """What a room id names: the session row (if any) and whether that occurrence exists."""

    session: SessionRow | None
    starts_at: datetime
    exists: bool
    cancelled: bool


async def lookup_room(db: DbSession, room: str) -> RoomLookup:
    session_id, starts_at = parse_room(room)
    session = await db.get(SessionRow, session_id)
    if session is None:
        return RoomLookup(None, starts_at, exists=False, cancelled=False)
    exists = recurrence_of(session).occurs_at(starts_at)
    return RoomLookup(session, starts_at, exists=exists, cancelled=is_cancelled(session, starts_at))
