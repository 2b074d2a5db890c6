"""The coordinators' directory: care homes, schools, devices, pairings, sessions and access codes.

The one place that changes these rows, for the admin API and for the demo's seeding alike, so it
knows nothing of HTTP: it raises :mod:`session_server.errors` and each caller maps those to its
own world. Every function commits what it changes. Secrets (device tokens, access codes) are
made here, handed back exactly once, and only their digests are stored.

    async with factory() as db:
        home = await create_care_home(db, "Rosewood Care Home")
        registered = await register_device(db, "rosewood-box", care_home_id=home.id)
        print(registered.token)  # the only time anyone sees it
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from session_server import credentials
from session_server.db.engine import DbSession
from session_server.db.models import (
    AccessCode,
    Cancellation,
    CareHome,
    Device,
    Pairing,
    School,
)
from session_server.db.models import Session as SessionRow
from session_server.errors import Conflict, InvalidInput, NotFound
from session_server.protocol import Occurrence
from session_server.recurrence import Recurrence, parse_local_start, parse_rule
from session_server.schedule import Window, expand, is_cancelled, occurrence, recurrence_of

NAME_MAX = 200
TITLE_MAX = 200
REASON_MAX = 500

_Row = TypeVar("_Row", CareHome, School, Device, Pairing, SessionRow, AccessCode)


def _clean(text: str, what: str, longest: int, *, required: bool = True) -> str:
    value = " ".join(text.split())
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > longest:
        raise InvalidInput(f"{what} is {len(value)} characters long; at most {longest} fit")
    return value


async def _get(db: DbSession, model: type[_Row], row_id: int, what: str) -> _Row:
    row = await db.get(model, row_id)
    if row is None:
        raise NotFound(f"there is no {what} with id {row_id}")
    return row


async def _commit(db: DbSession, clash: str) -> None:
    """Commit; a unique constraint that fires here (a concurrent duplicate) is a Conflict."""
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict(clash) from exc


async def _reload(db: DbSession, row: _Row) -> _Row:
    # The joined relationships of a row made in this session are not loaded yet, and an async
    # session cannot load them lazily later: load them now.
    await db.refresh(row)
    return row


# --- care homes and schools ------------------------------------------------------------------


_Organisation = TypeVar("_Organisation", CareHome, School)


async def _create_organisation(
    db: DbSession, model: type[_Organisation], name: str, what: str
) -> _Organisation:
    """A care home or a school: the same shape, a unique name."""
    name = _clean(name, f"a {what}'s name", NAME_MAX)
    clash = f"a {what} named {name!r} already exists"
    if await _named(db, model, name) is not None:
        raise Conflict(clash)
    row = model(name=name)
    db.add(row)
    await _commit(db, clash)
    return row


async def _named(db: DbSession, model: type[_Organisation], name: str) -> _Organisation | None:
    row: _Organisation | None = await db.scalar(select(model).where(model.name == name))
    return row


async def create_care_home(db: DbSession, name: str) -> CareHome:
    return await _create_organisation(db, CareHome, name, "care home")


async def care_home_named(db: DbSession, name: str) -> CareHome | None:
    return await _named(db, CareHome, name)


async def list_care_homes(db: DbSession) -> list[CareHome]:
    return list(await db.scalars(select(CareHome).order_by(CareHome.name)))


async def get_care_home(db: DbSession, care_home_id: int) -> CareHome:
    return await _get(db, CareHome, care_home_id, "care home")


async def create_school(db: DbSession, name: str) -> School:
    return await _create_organisation(db, School, name, "school")


async def school_named(db: DbSession, name: str) -> School | None:
    return await _named(db, School, name)


async def list_schools(db: DbSession) -> list[School]:
    return list(await db.scalars(select(School).order_by(School.name)))


async def get_school(db: DbSession, school_id: int) -> School:
    return await _get(db, School, school_id, "school")


# --- devices ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredDevice:
    """A new device and its token: the token exists only in this object, never in the database."""

    device: Device
    token: str

    def __repr__(self) -> str:  # a stray log line must not carry the token
        return f"RegisteredDevice(device_id={self.device.id}, token=***)"


async def register_device(
    db: DbSession, name: str, *, care_home_id: int | None = None, school_id: int | None = None
) -> RegisteredDevice:
    """A box for one care home or one school; returns its token, which is shown only now."""
    name = _clean(name, "a device's name", NAME_MAX)
    if (care_home_id is None) == (school_id is None):
        raise InvalidInput("a device belongs to exactly one care home or one school: give one")
    if care_home_id is not None:
        await get_care_home(db, care_home_id)
    if school_id is not None:
        await get_school(db, school_id)
    clash = f"a device named {name!r} already exists"
    if await device_named(db, name) is not None:
        raise Conflict(clash)
    token = credentials.new_device_token()
    device = Device(
        name=name,
        care_home_id=care_home_id,
        school_id=school_id,
        token_hash=credentials.digest(token),
    )
    db.add(device)
    await _commit(db, clash)
    return RegisteredDevice(await _reload(db, device), token)


async def reissue_device_token(db: DbSession, device_id: int) -> RegisteredDevice:
    """A new token for a device whose token was lost; the old one stops working at once."""
    device = await get_device(db, device_id)
    if device.revoked_at is not None:
        raise Conflict(f"device {device.name!r} is revoked; register a new device instead")
    token = credentials.new_device_token()
    device.token_hash = credentials.digest(token)
    await db.commit()
    return RegisteredDevice(device, token)


async def device_named(db: DbSession, name: str) -> Device | None:
    device: Device | None = await db.scalar(select(Device).where(Device.name == name))
    return device


async def list_devices(db: DbSession) -> list[Device]:
    return list(await db.scalars(select(Device).order_by(Device.id)))


async def get_device(db: DbSession, device_id: int) -> Device:
    return await _get(db, Device, device_id, "device")


async def revoke_device(db: DbSession, device_id: int, now: datetime) -> Device:
    device = await get_device(db, device_id)
    if device.revoked_at is not None:
        raise Conflict(f"device {device.name!r} was already revoked")
    device.revoked_at = now
    await db.commit()
    return device


# --- pairings --------------------------------------------------------------------------------


async def create_pairing(db: DbSession, care_home_id: int, school_id: int) -> Pairing:
    home = await get_care_home(db, care_home_id)
    school = await get_school(db, school_id)
    clash = f"{home.name!r} and {school.name!r} are already paired"
    existing = await pairing_of(db, care_home_id, school_id)
    if existing is not None:
        raise Conflict(f"{clash} (pairing {existing.id})")
    pairing = Pairing(care_home_id=care_home_id, school_id=school_id)
    db.add(pairing)
    await _commit(db, clash)
    return await _reload(db, pairing)


async def pairing_of(db: DbSession, care_home_id: int, school_id: int) -> Pairing | None:
    pairing: Pairing | None = await db.scalar(
        select(Pairing).where(Pairing.care_home_id == care_home_id, Pairing.school_id == school_id)
    )
    return pairing


async def list_pairings(db: DbSession) -> list[Pairing]:
    return list(await db.scalars(select(Pairing).order_by(Pairing.id)))


async def get_pairing(db: DbSession, pairing_id: int) -> Pairing:
    return await _get(db, Pairing, pairing_id, "pairing")


# --- sessions and cancellations --------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    """What a coordinator says about a session. ``timezone`` None means the server's zone."""

    title: str
    starts_local: str
    duration_minutes: int
    rrule: str | None = None
    timezone: str | None = None
    pairing_id: int | None = None
    care_home_id: int | None = None
    school_id: int | None = None


async def _pairing_for(db: DbSession, new: NewSession) -> Pairing:
    by_parties = new.care_home_id is not None or new.school_id is not None
    if new.pairing_id is not None and by_parties:
        raise InvalidInput("give either a pairing or a care home and a school, not both")
    if new.pairing_id is not None:
        return await get_pairing(db, new.pairing_id)
    if new.care_home_id is None or new.school_id is None:
        raise InvalidInput("give a pairing, or both a care home and a school")
    existing = await pairing_of(db, new.care_home_id, new.school_id)
    # A session between two parties means they are paired: pair them rather than refuse.
    return existing or await create_pairing(db, new.care_home_id, new.school_id)


def _validated_recurrence(new: NewSession, default_timezone: str) -> Recurrence:
    starts = parse_local_start(new.starts_local.strip())
    rule = new.rrule.strip() if new.rrule and new.rrule.strip() else None
    recurrence = Recurrence(
        starts.isoformat(timespec="minutes"),
        (new.timezone or default_timezone).strip(),
        new.duration_minutes,
        rule,
    )
    if rule is not None and next(iter(parse_rule(rule, starts)), None) is None:
        raise InvalidInput(f"RRULE {rule!r} never happens after {recurrence.starts_local}")
    return recurrence


async def create_session(db: DbSession, new: NewSession, *, default_timezone: str) -> SessionRow:
    """A one-off (no rrule) or recurring session of a pairing; every value is checked first."""
    title = _clean(new.title, "a session's title", TITLE_MAX)
    recurrence = _validated_recurrence(new, default_timezone)
    pairing = await _pairing_for(db, new)
    session = SessionRow(
        pairing_id=pairing.id,
        title=title,
        starts_local=recurrence.starts_local,
        timezone=recurrence.timezone,
        duration_minutes=recurrence.duration_minutes,
        rrule=recurrence.rrule,
    )
    db.add(session)
    await db.commit()
    return await _reload(db, session)


async def list_sessions(db: DbSession) -> list[SessionRow]:
    return list(await db.scalars(select(SessionRow).order_by(SessionRow.id)))


async def get_session(db: DbSession, session_id: int) -> SessionRow:
    return await _get(db, SessionRow, session_id, "session")


def next_start(session: SessionRow, now: datetime) -> datetime | None:
    """The next occurrence that has not started and is not cancelled, within a year."""
    for starts_at in recurrence_of(session).starts_between(now, now + timedelta(days=366)):
        if not is_cancelled(session, starts_at):
            return starts_at
    return None


def _local_text(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%a %d %b %Y %H:%M")


def _resolve_start(session: SessionRow, starts_at: datetime) -> datetime:
    """An occurrence's UTC start; a time without an offset is wall-clock time in its zone."""
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=ZoneInfo(session.timezone))
    return starts_at.astimezone(UTC).replace(second=0, microsecond=0)


async def cancel_occurrence(
    db: DbSession, session_id: int, starts_at: datetime, reason: str = ""
) -> Cancellation:
    """Call off one occurrence, named by its start: UTC, any offset, or the session's local time."""
    session = await get_session(db, session_id)
    reason = _clean(reason, "a reason", REASON_MAX, required=False)
    start = _resolve_start(session, starts_at)
    recurrence = recurrence_of(session)
    if not recurrence.occurs_at(start):
        near = recurrence.starts_between(start - timedelta(days=8), start + timedelta(days=8))
        hint = (
            "; occurrences near then start "
            + ", ".join(_local_text(s, session.timezone) for s in near)
            if near
            else ""
        )
        raise InvalidInput(
            f"session {session.id} ({session.title!r}) has no occurrence starting "
            f"{_local_text(start, session.timezone)} {session.timezone} "
            f"({start:%Y-%m-%d %H:%M} UTC){hint}"
        )
    clash = (
        f"the occurrence of session {session.id} on "
        f"{_local_text(start, session.timezone)} is already cancelled"
    )
    if is_cancelled(session, start):
        raise Conflict(clash)
    cancellation = Cancellation(session_id=session.id, occurrence_starts_at=start, reason=reason)
    db.add(cancellation)
    await _commit(db, clash)
    await db.refresh(session)  # its cancellations list now includes this one
    return cancellation


# --- occurrences -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedOccurrence:
    """One occurrence as a coordinator sees it: cancelled ones stay visible, marked."""

    occurrence: Occurrence
    timezone: str
    cancelled: bool = False
    cancellation_reason: str = ""


async def list_occurrences(
    db: DbSession, start: datetime, end: datetime, window: Window
) -> list[ListedOccurrence]:
    """Occurrences that overlap [start, end), cancelled ones included and marked, soonest first."""
    sessions = await list_sessions(db)
    by_id = {s.id: s for s in sessions}
    listed = [
        ListedOccurrence(o, by_id[o.session_id].timezone)
        for o in expand(sessions, start, end, window)
        if o.ends_at > start and o.starts_at < end
    ]
    for session in sessions:
        for cancellation in session.cancellations:
            starts_at = cancellation.occurrence_starts_at
            ends_at = starts_at + timedelta(minutes=session.duration_minutes)
            if ends_at > start and starts_at < end:
                listed.append(
                    ListedOccurrence(
                        occurrence(session, starts_at, window),
                        session.timezone,
                        cancelled=True,
                        cancellation_reason=cancellation.reason,
                    )
                )
    listed.sort(key=lambda x: (x.occurrence.starts_at, x.occurrence.session_id))
    return listed


def local_day_bounds(now: datetime, zone: str, days: int) -> tuple[datetime, datetime]:
    """From the start of today in ``zone`` to the end of the ``days``-th day after it (UTC)."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    start = datetime(today.year, today.month, today.day, tzinfo=tz)
    last = today + timedelta(days=days + 1)
    end = datetime(last.year, last.month, last.day, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- access codes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCode:
    """A new access code: the plain code exists only in this object, never in the database."""

    access_code: AccessCode
    code: str

    def __repr__(self) -> str:
        return f"IssuedCode(access_code_id={self.access_code.id}, code=***)"


async def issue_access_code(db: DbSession, school_id: int, label: str = "") -> IssuedCode:
    await get_school(db, school_id)
    label = _clean(label, "a label", NAME_MAX, required=False)
    code = credentials.new_access_code()
    row = AccessCode(school_id=school_id, label=label, code_hash=credentials.digest(code))
    db.add(row)
    await db.commit()
    return IssuedCode(await _reload(db, row), code)


async def list_access_codes(db: DbSession, school_id: int) -> list[AccessCode]:
    await get_school(db, school_id)
    return list(
        await db.scalars(
            select(AccessCode).where(AccessCode.school_id == school_id).order_by(AccessCode.id)
        )
    )


async def get_access_code(db: DbSession, code_id: int) -> AccessCode:
    return await _get(db, AccessCode, code_id, "access code")


async def revoke_access_code(db: DbSession, code_id: int, now: datetime) -> AccessCode:
    code = await get_access_code(db, code_id)
    if code.revoked_at is not None:
        raise Conflict(f"access code {code.id} ({code.label or 'no label'}) was already revoked")
    code.revoked_at = now
    await db.commit()
    return code
