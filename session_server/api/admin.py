"""The coordinators' admin REST API, mounted at ``/api``; every route needs the admin token.

    curl -H "Authorization: Bearer $TWM_SERVER_ADMIN_TOKEN" http://127.0.0.1:8000/api/occurrences

Routes are thin: :mod:`session_server.directory` does the work, and its errors become HTTP
answers here (not found 404, conflict 409, invalid 422, each ``{"detail": "<why>"}``). Each change
is written to the audit log (ids and names, never a token or code), and the signalling hub is told
so connected parties see new schedules and revoked credentials lose their connection at once.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.routing import APIRoute
from sqlalchemy import select

from session_server import directory
from session_server.api.admin_models import (
    AccessCodeOut,
    AuditEntryOut,
    CancellationOut,
    CareHomeOut,
    DeviceOut,
    ErrorOut,
    IssuedAccessCodeOut,
    NewAccessCode,
    NewCancellation,
    NewDevice,
    NewOrganisation,
    NewPairing,
    NewSessionIn,
    OccurrenceOut,
    PairingOut,
    PartyRef,
    RegisteredDeviceOut,
    SchoolOut,
    SessionOut,
)
from session_server.api.deps import Admin, Context, Db, HubDep
from session_server.audit import AuditEvent, record
from session_server.db.models import AccessCode, AuditEntry, CareHome, Device, Pairing, School
from session_server.db.models import Session as SessionRow
from session_server.directory import ListedOccurrence, NewSession
from session_server.errors import Conflict, InvalidInput, NotFound, ServerError

_STATUS: dict[type[ServerError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


class _DirectoryErrorsRoute(APIRoute):
    """Turns the directory's errors into HTTP answers, for this router only."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (NotFound, Conflict, InvalidInput) as exc:
                raise HTTPException(_STATUS[type(exc)], str(exc)) from exc

        return handle


router = APIRouter(
    route_class=_DirectoryErrorsRoute,
    tags=["admin"],
    responses={
        401: {"model": ErrorOut, "description": "Admin token missing or wrong"},
        404: {"model": ErrorOut, "description": "No such care home, school, session …"},
        409: {"model": ErrorOut, "description": "Clashes with what exists (a duplicate name …)"},
        503: {"model": ErrorOut, "description": "The admin API is off (no admin token set)"},
    },
)


async def _audit(db: Db, request: Request, actor: str, action: str, **ids: Any) -> None:
    remote = request.client.host if request.client else None
    await record(db, AuditEvent.ADMIN, actor=actor, remote=remote, action=action, **ids)


def _ref(row: CareHome | School) -> PartyRef:
    return PartyRef(id=row.id, name=row.name)


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


# --- care homes and schools ------------------------------------------------------------------


@router.post("/care-homes", status_code=status.HTTP_201_CREATED)
async def create_care_home(
    body: NewOrganisation, request: Request, db: Db, admin: Admin
) -> CareHomeOut:
    home = await directory.create_care_home(db, body.name)
    await _audit(db, request, admin, "care_home.create", care_home_id=home.id, name=home.name)
    return CareHomeOut(id=home.id, name=home.name, created_at=home.created_at)


@router.get("/care-homes")
async def list_care_homes(db: Db, admin: Admin) -> list[CareHomeOut]:
    return [
        CareHomeOut(id=h.id, name=h.name, created_at=h.created_at)
        for h in await directory.list_care_homes(db)
    ]


@router.post("/schools", status_code=status.HTTP_201_CREATED)
async def create_school(body: NewOrganisation, request: Request, db: Db, admin: Admin) -> SchoolOut:
    school = await directory.create_school(db, body.name)
    await _audit(db, request, admin, "school.create", school_id=school.id, name=school.name)
    return SchoolOut(id=school.id, name=school.name, created_at=school.created_at)


@router.get("/schools")
async def list_schools(db: Db, admin: Admin) -> list[SchoolOut]:
    return [
        SchoolOut(id=s.id, name=s.name, created_at=s.created_at)
        for s in await directory.list_schools(db)
    ]


# --- devices ---------------------------------------------------------------------------------


def _device_out(device: Device, online: frozenset[int] = frozenset()) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        name=device.name,
        care_home=_ref(device.care_home) if device.care_home else None,
        school=_ref(device.school) if device.school else None,
        created_at=device.created_at,
        revoked_at=device.revoked_at,
        last_seen_at=device.last_seen_at,
        online=device.id in online,
    )


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def register_device(
    body: NewDevice, request: Request, db: Db, admin: Admin
) -> RegisteredDeviceOut:
    registered = await directory.register_device(
        db, body.name, care_home_id=body.care_home_id, school_id=body.school_id
    )
    device = registered.device
    await _audit(
        db,
        request,
        admin,
        "device.register",
        device_id=device.id,
        name=device.name,
        care_home_id=device.care_home_id,
        school_id=device.school_id,
    )
    return RegisteredDeviceOut(
        **_device_out(device).model_dump(mode="python"), token=registered.token
    )


@router.get("/devices")
async def list_devices(db: Db, hub: HubDep, admin: Admin) -> list[DeviceOut]:
    online = hub.online_devices()
    return [_device_out(d, online) for d in await directory.list_devices(db)]


@router.post("/devices/{device_id}/revoke")
async def revoke_device(
    device_id: int, request: Request, context: Context, db: Db, hub: HubDep, admin: Admin
) -> DeviceOut:
    device = await directory.revoke_device(db, device_id, context.clock.now())
    await _audit(db, request, admin, "device.revoke", device_id=device.id, name=device.name)
    await hub.device_revoked(device.id)
    return _device_out(device)


# --- pairings --------------------------------------------------------------------------------


def _pairing_out(pairing: Pairing) -> PairingOut:
    return PairingOut(
        id=pairing.id,
        care_home=_ref(pairing.care_home),
        school=_ref(pairing.school),
        created_at=pairing.created_at,
    )


@router.post("/pairings", status_code=status.HTTP_201_CREATED)
async def create_pairing(
    body: NewPairing, request: Request, db: Db, hub: HubDep, admin: Admin
) -> PairingOut:
    pairing = await directory.create_pairing(db, body.care_home_id, body.school_id)
    await _audit(
        db,
        request,
        admin,
        "pairing.create",
        pairing_id=pairing.id,
        care_home_id=pairing.care_home_id,
        school_id=pairing.school_id,
    )
    await hub.schedule_changed()
    return _pairing_out(pairing)


@router.get("/pairings")
async def list_pairings(db: Db, admin: Admin) -> list[PairingOut]:
    return [_pairing_out(p) for p in await directory.list_pairings(db)]


# --- sessions and cancellations --------------------------------------------------------------


def _session_out(session: SessionRow, now: datetime) -> SessionOut:
    return SessionOut(
        id=session.id,
        pairing_id=session.pairing_id,
        care_home=_ref(session.pairing.care_home),
        school=_ref(session.pairing.school),
        title=session.title,
        starts_local=session.starts_local,
        timezone=session.timezone,
        duration_minutes=session.duration_minutes,
        rrule=session.rrule,
        next_starts_at=directory.next_start(session, now),
        cancellations=[
            CancellationOut(
                id=c.id,
                session_id=c.session_id,
                occurrence_starts_at=c.occurrence_starts_at,
                reason=c.reason,
            )
            for c in session.cancellations
        ],
    )


@router.post("/sessions", status_code=status.HTTP_201_CREATED)
async def create_session(
    body: NewSessionIn, request: Request, context: Context, db: Db, hub: HubDep, admin: Admin
) -> SessionOut:
    session = await directory.create_session(
        db, NewSession(**body.model_dump()), default_timezone=context.settings.timezone
    )
    await _audit(
        db,
        request,
        admin,
        "session.create",
        session_id=session.id,
        pairing_id=session.pairing_id,
        title=session.title,
        starts_local=session.starts_local,
        timezone=session.timezone,
        rrule=session.rrule,
    )
    await hub.schedule_changed()
    return _session_out(session, context.clock.now())


@router.get("/sessions")
async def list_sessions(context: Context, db: Db, admin: Admin) -> list[SessionOut]:
    now = context.clock.now()
    return [_session_out(s, now) for s in await directory.list_sessions(db)]


@router.post("/sessions/{session_id}/cancellations", status_code=status.HTTP_201_CREATED)
async def cancel_occurrence(
    session_id: int,
    body: NewCancellation,
    request: Request,
    db: Db,
    hub: HubDep,
    admin: Admin,
) -> CancellationOut:
    cancellation = await directory.cancel_occurrence(
        db, session_id, body.occurrence_starts_at, body.reason
    )
    await _audit(
        db,
        request,
        admin,
        "session.cancel_occurrence",
        session_id=session_id,
        occurrence_starts_at=cancellation.occurrence_starts_at.isoformat(),
    )
    await hub.schedule_changed()
    return CancellationOut(
        id=cancellation.id,
        session_id=cancellation.session_id,
        occurrence_starts_at=cancellation.occurrence_starts_at,
        reason=cancellation.reason,
    )


def _occurrence_out(listed: ListedOccurrence) -> OccurrenceOut:
    o, zone = listed.occurrence, listed.timezone
    return OccurrenceOut(
        room=o.room,
        session_id=o.session_id,
        title=o.title,
        care_home=PartyRef(id=o.care_home.id, name=o.care_home.name),
        school=PartyRef(id=o.school.id, name=o.school.name),
        timezone=zone,
        starts_at=o.starts_at,
        ends_at=o.ends_at,
        starts_local=_local(o.starts_at, zone),
        ends_local=_local(o.ends_at, zone),
        window_opens_at=o.window_opens_at,
        window_closes_at=o.window_closes_at,
        cancelled=listed.cancelled,
        cancellation_reason=listed.cancellation_reason,
    )


@router.get("/occurrences")
async def list_occurrences(
    context: Context,
    db: Db,
    admin: Admin,
    days: Annotated[int, Query(ge=0, le=366, description="today plus this many days")] = 7,
) -> list[OccurrenceOut]:
    """Today's and the next ``days`` days' occurrences (days in the server's time zone)."""
    start, end = directory.local_day_bounds(context.clock.now(), context.settings.timezone, days)
    listed = await directory.list_occurrences(db, start, end, context.window)
    return [_occurrence_out(x) for x in listed]


# --- access codes ----------------------------------------------------------------------------


def _code_out(code: AccessCode) -> AccessCodeOut:
    return AccessCodeOut(
        id=code.id,
        school_id=code.school_id,
        label=code.label,
        created_at=code.created_at,
        revoked_at=code.revoked_at,
    )


@router.post("/schools/{school_id}/access-codes", status_code=status.HTTP_201_CREATED)
async def issue_access_code(
    school_id: int, body: NewAccessCode, request: Request, db: Db, admin: Admin
) -> IssuedAccessCodeOut:
    issued = await directory.issue_access_code(db, school_id, body.label)
    code = issued.access_code
    await _audit(
        db,
        request,
        admin,
        "access_code.issue",
        access_code_id=code.id,
        school_id=code.school_id,
        label=code.label,
    )
    return IssuedAccessCodeOut(**_code_out(code).model_dump(mode="python"), code=issued.code)


@router.get("/schools/{school_id}/access-codes")
async def list_access_codes(school_id: int, db: Db, admin: Admin) -> list[AccessCodeOut]:
    return [_code_out(c) for c in await directory.list_access_codes(db, school_id)]


@router.post("/access-codes/{code_id}/revoke")
async def revoke_access_code(
    code_id: int, request: Request, context: Context, db: Db, hub: HubDep, admin: Admin
) -> AccessCodeOut:
    code = await directory.revoke_access_code(db, code_id, context.clock.now())
    await _audit(
        db, request, admin, "access_code.revoke", access_code_id=code.id, school_id=code.school_id
    )
    await hub.access_code_revoked(code.id)
    return _code_out(code)


# --- audit -----------------------------------------------------------------------------------


@router.get("/audit")
async def audit_log(
    db: Db,
    admin: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    event: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditEntryOut]:
    """The newest audit entries first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if event is not None:
        query = query.where(AuditEntry.event == event)
    return [
        AuditEntryOut(
            id=e.id,
            at=e.at,
            event=e.event,
            actor=e.actor,
            room=e.room,
            remote=e.remote,
            detail=e.detail,
        )
        for e in await db.scalars(query)
    ]
