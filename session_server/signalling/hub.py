"""The signalling hub: who is connected, who is in which room, and relaying between the two.

A room is one occurrence of a session. It holds at most one connection per side (care home,
school); a newer connection for the same side replaces the older one, because a box that lost its
network reconnects before the server notices the old socket is dead. Messages are relayed only
between the two members of a room, and only while its window is open.

Every method runs on the event loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import structlog

from session_server.access import may_enter
from session_server.audit import AuditEvent, record
from session_server.context import ServerContext
from session_server.db.models import utcnow
from session_server.identity import device_from_token, party_of, school_from_ticket
from session_server.protocol import (
    Answer,
    Candidate,
    ClientMessage,
    Error,
    ErrorCode,
    Hello,
    Join,
    Joined,
    Leave,
    LinkReport,
    LinkState,
    Occurrence,
    Offer,
    Party,
    PartyKind,
    Presence,
    Schedule,
    Welcome,
)
from session_server.schedule import lookup_room, occurrence, schedule_for
from session_server.signalling.connection import CLOSE_POLICY_VIOLATION, Connection
from session_server.tickets import TicketError
from session_server.turn import ice_servers

log = structlog.get_logger("twm.signalling")

_DAY = timedelta(days=1)
_MINUTE = timedelta(minutes=1)


class AuthenticationFailed(Exception):
    """The hello did not prove who the client is; ``error`` says why, for the client."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(eq=False)
class Room:
    id: str
    occurrence: Occurrence
    members: dict[PartyKind, Connection] = field(default_factory=dict)

    def other(self, connection: Connection) -> Connection | None:
        for kind, member in self.members.items():
            if kind is not connection.party.kind:
                return member
        return None


def _other_kind(kind: PartyKind) -> PartyKind:
    return PartyKind.SCHOOL if kind is PartyKind.CARE_HOME else PartyKind.CARE_HOME


class Hub:
    def __init__(self, context: ServerContext) -> None:
        self._context = context
        self._connections: set[Connection] = set()
        self._rooms: dict[str, Room] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._schedule_day: date | None = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def online_devices(self) -> frozenset[int]:
        """The devices connected (and welcomed) right now."""
        return frozenset(c.device_id for c in self._connections if c.device_id is not None)

    def room_members(self, room: str) -> list[Party]:
        found = self._rooms.get(room)
        return [member.party for member in found.members.values()] if found else []

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._schedule_day = self._today()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="signalling-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self._connections):
            connection.close(1001, "server shutting down")

    def _today(self) -> date:
        return self._context.clock.now().astimezone(self._context.settings.zone).date()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._context.settings.sweep_seconds)
            try:
                await self.sweep()
            except Exception:  # a sweep must never end the sweeper; the next one may succeed
                log.exception("sweep failed")

    async def sweep(self) -> None:
        """Close rooms whose window has closed; push fresh schedules when the day changes."""
        now = self._context.clock.now()
        for room in list(self._rooms.values()):
            if now >= room.occurrence.window_closes_at:
                await self._close_room(room, ErrorCode.CLOSED, "this session's time is over")
        if self._today() != self._schedule_day:
            self._schedule_day = self._today()
            await self.schedule_changed()

    # --- connections --------------------------------------------------------------------------

    async def authenticate(self, hello: Hello, remote: str) -> Connection:
        """Turn a hello into a connection, or raise ``AuthenticationFailed`` (already audited)."""
        if (hello.device_token is None) == (hello.ticket is None):
            raise AuthenticationFailed(
                Error(code=ErrorCode.INVALID, message="send exactly one of device_token or ticket")
            )
        async with self._context.db() as db:
            if hello.device_token is not None:
                device = await device_from_token(db, hello.device_token.get_secret_value())
                if device is None or device.revoked_at is not None:
                    await record(
                        db,
                        AuditEvent.DEVICE_REFUSED,
                        actor=f"device:{device.id}" if device else "unknown device",
                        remote=remote,
                        reason="unknown_token" if device is None else "revoked",
                    )
                    message = (
                        "this device's token is not recognised: provision the box again"
                        if device is None
                        else "this device has been revoked: ask the coordinator"
                    )
                    raise AuthenticationFailed(Error(code=ErrorCode.AUTH_FAILED, message=message))
                device.last_seen_at = utcnow()
                party = party_of(device)
                connection = Connection(
                    party=party, actor=f"device:{device.id}", remote=remote, device_id=device.id
                )
                await record(db, AuditEvent.DEVICE_CONNECTED, actor=connection.actor, remote=remote)
            else:
                assert hello.ticket is not None  # checked above: exactly one is set
                try:
                    page = await school_from_ticket(
                        self._context, db, hello.ticket.get_secret_value()
                    )
                except TicketError as exc:
                    await record(
                        db,
                        AuditEvent.SIGN_IN_REFUSED,
                        actor="school page",
                        remote=remote,
                        reason="bad_ticket",
                    )
                    raise AuthenticationFailed(
                        Error(code=ErrorCode.AUTH_FAILED, message=str(exc))
                    ) from exc
                party = page.party
                connection = Connection(
                    party=party,
                    actor=f"school-page:{party.id}",
                    remote=remote,
                    access_code_id=page.access_code_id,
                    expires_at=page.expires_at,
                )
            schedule = await schedule_for(
                db,
                party,
                self._context.clock.now(),
                self._context.settings.schedule_horizon_days * _DAY,
                self._context.window,
            )
        self._connections.add(connection)
        connection.send(Welcome(party=party, server_time=self._context.clock.now()))
        connection.send(Schedule(occurrences=schedule))
        return connection

    async def disconnect(self, connection: Connection) -> None:
        self._connections.discard(connection)
        if connection.room is not None:
            await self._leave(connection, connection.room, AuditEvent.DISCONNECTED)

    # --- messages -----------------------------------------------------------------------------

    async def handle(self, connection: Connection, message: ClientMessage) -> None:
        match message:
            case Hello():
                connection.send(Error(code=ErrorCode.INVALID, message="already signed in"))
            case Join():
                await self._join(connection, message.room)
            case Leave():
                if connection.room != message.room:
                    self._not_in_room(connection, message.room)
                else:
                    await self._leave(connection, message.room, AuditEvent.LEAVE)
            case Offer() | Answer() | Candidate():
                self._relay(connection, message)
            case LinkReport():
                if connection.room != message.room:
                    self._not_in_room(connection, message.room)
                    return
                event = (
                    AuditEvent.LINK_UP if message.state is LinkState.UP else AuditEvent.LINK_DOWN
                )
                async with self._context.db() as db:
                    await record(
                        db,
                        event,
                        actor=connection.actor,
                        room=message.room,
                        remote=connection.remote,
                        route=message.route.value,
                    )

    def _not_in_room(self, connection: Connection, room: str) -> None:
        connection.send(
            Error(code=ErrorCode.NOT_IN_ROOM, message="join this room first", room=room)
        )

    def _relay(self, connection: Connection, message: Offer | Answer | Candidate) -> None:
        room = self._rooms.get(message.room)
        if room is None or connection.room != message.room:
            self._not_in_room(connection, message.room)
            return
        peer = room.other(connection)
        if peer is None:
            connection.send(
                Error(
                    code=ErrorCode.PEER_ABSENT,
                    message="the other side has not joined yet",
                    room=message.room,
                )
            )
            return
        peer.send(message)

    async def _join(self, connection: Connection, room_id: str) -> None:
        context = self._context
        now = context.clock.now()
        if connection.expires_at is not None and now >= connection.expires_at:
            await self._expel(connection, "your sign-in has expired: sign in again")
            return
        async with context.db() as db:
            found = await lookup_room(db, room_id)
            occ = (
                occurrence(found.session, found.starts_at, context.window)
                if found.session is not None and found.exists
                else None
            )
            refusal = may_enter(
                connection.party,
                occ,
                cancelled=found.cancelled,
                now=now,
                zone=context.settings.zone,
            )
            if refusal is not None or occ is None:
                code = refusal.code if refusal else ErrorCode.NO_SUCH_ROOM
                message = refusal.message if refusal else "there is no such session"
                await record(
                    db,
                    AuditEvent.JOIN_REFUSED,
                    actor=connection.actor,
                    room=room_id,
                    remote=connection.remote,
                    reason=code.value,
                )
                connection.send(Error(code=code, message=message, room=room_id))
                return
        # From here to the send of Joined there is no await: two joins cannot interleave, so
        # exactly one of two parties joining at once is told its peer is present.
        if connection.room is not None and connection.room != room_id:
            await self._leave(connection, connection.room, AuditEvent.LEAVE)
        room = self._rooms.setdefault(room_id, Room(id=room_id, occurrence=occ))
        replaced = room.members.get(connection.party.kind)
        if replaced is not None and replaced is not connection:
            replaced.room = None
            replaced.send(
                Error(
                    code=ErrorCode.REPLACED,
                    message="this room was joined again from another connection",
                    room=room_id,
                )
            )
        room.members[connection.party.kind] = connection
        connection.room = room_id
        peer = room.members.get(_other_kind(connection.party.kind))
        connection.send(
            Joined(
                room=room_id,
                ice_servers=ice_servers(
                    context.settings.stun_urls,
                    context.settings.turn_urls,
                    context.settings.turn_secret,
                    who=f"{connection.party.kind.value}-{connection.party.id}",
                    now=now,
                    lifetime=context.settings.turn_credential_minutes * _MINUTE,
                ),
                peer_present=peer is not None,
                window_closes_at=occ.window_closes_at,
            )
        )
        if peer is not None:
            if replaced is not None and replaced is not connection:
                peer.send(Presence(room=room_id, party=connection.party, present=False))
            peer.send(Presence(room=room_id, party=connection.party, present=True))
        async with context.db() as db:
            await record(
                db,
                AuditEvent.JOIN,
                actor=connection.actor,
                room=room_id,
                remote=connection.remote,
                peer_present=peer is not None,
                replaced=replaced is not None and replaced is not connection,
            )

    async def _leave(self, connection: Connection, room_id: str, event: AuditEvent) -> None:
        room = self._rooms.get(room_id)
        connection.room = None
        if room is None or room.members.get(connection.party.kind) is not connection:
            return
        del room.members[connection.party.kind]
        peer = room.other(connection)
        if peer is not None:
            peer.send(Presence(room=room_id, party=connection.party, present=False))
        if not room.members:
            del self._rooms[room_id]
        async with self._context.db() as db:
            await record(db, event, actor=connection.actor, room=room_id, remote=connection.remote)

    async def _close_room(self, room: Room, code: ErrorCode, message: str) -> None:
        self._rooms.pop(room.id, None)
        for member in room.members.values():
            member.room = None
            member.send(Error(code=code, message=message, room=room.id))
        async with self._context.db() as db:
            for member in room.members.values():
                await record(
                    db,
                    AuditEvent.KICKED,
                    actor=member.actor,
                    room=room.id,
                    remote=member.remote,
                    reason=code.value,
                )

    # --- changes made by coordinators ---------------------------------------------------------

    async def schedule_changed(self) -> None:
        """Push every connected party its new schedule; end rooms whose occurrence was cancelled."""
        context = self._context
        now = context.clock.now()
        async with context.db() as db:
            for room in list(self._rooms.values()):
                found = await lookup_room(db, room.id)
                if found.cancelled or not found.exists:
                    await self._close_room(room, ErrorCode.CANCELLED, "this session was cancelled")
            schedules: dict[Party, Schedule] = {}
            for party in {c.party for c in self._connections}:
                occurrences = await schedule_for(
                    db, party, now, context.settings.schedule_horizon_days * _DAY, context.window
                )
                schedules[party] = Schedule(occurrences=occurrences)
        for connection in list(self._connections):
            if connection.party in schedules:
                connection.send(schedules[connection.party])

    async def device_revoked(self, device_id: int) -> None:
        for connection in [c for c in self._connections if c.device_id == device_id]:
            await self._expel(connection, "this device has been revoked: ask the coordinator")

    async def access_code_revoked(self, code_id: int) -> None:
        for connection in [c for c in self._connections if c.access_code_id == code_id]:
            await self._expel(connection, "this access code was withdrawn: sign in again")

    async def _expel(self, connection: Connection, message: str) -> None:
        connection.send(Error(code=ErrorCode.AUTH_FAILED, message=message))
        await self.disconnect(connection)
        connection.close(CLOSE_POLICY_VIOLATION, "credentials revoked")
