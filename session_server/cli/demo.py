"""``twm-server demo``: a server on SQLite with a care home, a school and a session open right now.

The data directory keeps the database, the admin token and the care-home device's token, so a
second run reuses what the first made (same names, same device) and only adds what is missing: a
session open now if the last one is over, and a fresh access code (the previous demo code is
revoked, so exactly one works: the one printed).

The demo seeds through :mod:`session_server.directory` straight into the database, after the
migrations and before uvicorn starts, rather than through the admin API after start: the school
page then shows the session from its first request (no moment where the server is up but empty),
and seeding needs no HTTP round trips, no admin token in flight and no schedule push to parties
that cannot be connected yet.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from session_server import directory
from session_server.app import create_app
from session_server.cli.secretfile import read_secret, write_secret
from session_server.clock import SystemClock
from session_server.db.engine import DbSession, create_engine, migrate, session_factory
from session_server.db.models import Session as SessionRow
from session_server.directory import NewSession
from session_server.schedule import Window
from session_server.settings import ServerSettings

CARE_HOME = "Rosewood Care Home"
SCHOOL = "Hillside Primary"
DEVICE = "rosewood-demo-box"
NOW_TITLE = "Singing together (demo, open now)"
WEEKLY_TITLE = "Weekly singing"
CODE_LABEL = "demo"
DEVICE_TOKEN_FILE = "care-home-device.token"  # noqa: S105 (a file name, not a secret)
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name, not a secret)
_STARTED_AGO = timedelta(minutes=5)
_LENGTH_MINUTES = 60
_LEAST_LEFT = timedelta(minutes=20)


class DemoError(Exception):
    """The demo cannot start; the message says what to do."""


@dataclass(frozen=True)
class DemoSeed:
    care_home: str
    school: str
    open_now: SessionRow
    weekly: SessionRow
    access_code: str
    device_token_path: Path


def _local_minute(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None, second=0, microsecond=0)


async def _open_now(
    db: DbSession, pairing_id: int, now: datetime, zone: str, window: Window
) -> SessionRow:
    """A session of the pairing that is on now with time left, or a new one-off that is."""
    for listed in await directory.list_occurrences(db, now, now + timedelta(minutes=1), window):
        o = listed.occurrence
        session = await directory.get_session(db, o.session_id)
        if (
            session.pairing_id == pairing_id
            and not listed.cancelled
            and o.starts_at <= now
            and o.ends_at - now >= _LEAST_LEFT
        ):
            return session
    starts = _local_minute(now - _STARTED_AGO, zone)
    return await directory.create_session(
        db,
        NewSession(
            title=NOW_TITLE,
            starts_local=starts.isoformat(timespec="minutes"),
            duration_minutes=_LENGTH_MINUTES,
            timezone=zone,
            pairing_id=pairing_id,
        ),
        default_timezone=zone,
    )


async def _weekly(db: DbSession, pairing_id: int, now: datetime, zone: str) -> SessionRow:
    for session in await directory.list_sessions(db):
        if session.pairing_id == pairing_id and session.title == WEEKLY_TITLE:
            return session
    tomorrow = _local_minute(now, zone).date() + timedelta(days=1)
    day = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")[tomorrow.weekday()]
    return await directory.create_session(
        db,
        NewSession(
            title=WEEKLY_TITLE,
            starts_local=f"{tomorrow.isoformat()}T14:00",
            duration_minutes=45,
            rrule=f"FREQ=WEEKLY;BYDAY={day}",
            timezone=zone,
            pairing_id=pairing_id,
        ),
        default_timezone=zone,
    )


async def seed_demo(
    db: DbSession, now: datetime, *, zone: str, window: Window, data_dir: Path
) -> DemoSeed:
    """Make (or find) the demo's care home, school, pairing, device and sessions; issue a code."""
    home = await directory.care_home_named(db, CARE_HOME) or await directory.create_care_home(
        db, CARE_HOME
    )
    school = await directory.school_named(db, SCHOOL) or await directory.create_school(db, SCHOOL)
    pairing = await directory.pairing_of(db, home.id, school.id) or await directory.create_pairing(
        db, home.id, school.id
    )

    token_path = data_dir / DEVICE_TOKEN_FILE
    device = await directory.device_named(db, DEVICE)
    if device is None:
        registered = await directory.register_device(db, DEVICE, care_home_id=home.id)
        write_secret(token_path, registered.token)
    elif read_secret(token_path) is None and device.revoked_at is None:
        # Only the hash is kept, so a lost token file can only be replaced, not recovered.
        write_secret(token_path, (await directory.reissue_device_token(db, device.id)).token)

    open_now = await _open_now(db, pairing.id, now, zone, window)
    weekly = await _weekly(db, pairing.id, now, zone)

    for old in await directory.list_access_codes(db, school.id):
        if old.label == CODE_LABEL and old.revoked_at is None:
            await directory.revoke_access_code(db, old.id, now)
    issued = await directory.issue_access_code(db, school.id, CODE_LABEL)
    return DemoSeed(
        care_home=home.name,
        school=school.name,
        open_now=open_now,
        weekly=weekly,
        access_code=issued.code,
        device_token_path=token_path,
    )


def demo_settings(data_dir: Path, host: str, port: int) -> ServerSettings:
    """The demo's settings: its own SQLite file and an admin token kept in the data directory."""
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=0o700)  # it holds tokens
    token_path = data_dir / ADMIN_TOKEN_FILE
    admin_token = read_secret(token_path)
    if admin_token is None:
        admin_token = secrets.token_urlsafe(32)
        write_secret(token_path, admin_token)
    # database_url=None on purpose: a TWM_SERVER_DATABASE_URL in the environment is for the real
    # server, and the demo must never seed a production database.
    return ServerSettings(
        data_dir=data_dir,
        host=host,
        port=port,
        database_url=None,
        admin_token=SecretStr(admin_token),
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DemoError(
            f"cannot listen on {host}:{port} ({exc.strerror}): is another server running there? "
            "Stop it, or choose another port with --port"
        ) from exc
    return sock


def _page_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
    return f"http://{shown}:{port}/"


def _panel(seed: DemoSeed, settings: ServerSettings) -> Panel:
    zone = seed.open_now.timezone
    start = datetime.fromisoformat(seed.open_now.starts_local)
    end = start + timedelta(minutes=seed.open_now.duration_minutes)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("School page", _page_url(settings.host, settings.port))
    grid.add_row("Access code", f"[bold green]{seed.access_code}[/]")
    grid.add_row(
        "Open now",
        f"{seed.open_now.title}: {seed.care_home} with {seed.school}, "
        f"{start:%H:%M}-{end:%H:%M} {zone}",
    )
    grid.add_row("Every week", f"{seed.weekly.title} ({seed.weekly.rrule}, 14:00 {zone})")
    grid.add_row("Device token", f"{seed.device_token_path} (the care-home box's)")
    grid.add_row(
        "Admin CLI",
        f'export TWM_SERVER_ADMIN_TOKEN="$(cat {settings.data_dir / ADMIN_TOKEN_FILE})"\n'
        "twm-server admin occurrences",
    )
    grid.add_row("Data", f"{settings.data_dir} (delete it to start afresh)")
    return Panel(
        grid,
        title="Together with Music: demo server running",
        subtitle="Ctrl+C stops it",
        border_style="green",
        expand=False,
    )


async def _seed(settings: ServerSettings) -> DemoSeed:
    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        async with session_factory(engine)() as db:
            return await seed_demo(
                db,
                SystemClock().now(),
                zone=settings.timezone,
                window=Window(before=settings.window_before, after=settings.window_after),
                data_dir=settings.data_dir,
            )
    finally:
        await engine.dispose()


async def serve_demo(settings: ServerSettings, console: Console) -> None:
    """Seed, start the server, show the panel once it listens, and serve until stopped."""
    sock = _bind(settings.host, settings.port)
    try:
        seed = await _seed(settings)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                log_level="warning",
                ws="websockets-sansio",
                proxy_headers=False,
                lifespan="on",
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        # uvicorn has no "started" event to await; its flag is polled until it listens or fails.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            console.print(_panel(seed, settings))
        await serving
    finally:
        sock.close()
