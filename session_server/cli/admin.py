"""``twm-server admin …``: the coordinators' command line, a client of a running server's admin API.

    export TWM_SERVER_ADMIN_TOKEN=...            # the server's admin token
    twm-server admin care-homes add "Rosewood Care Home"
    twm-server admin schools add "Hillside Primary"
    twm-server admin sessions add --care-home Rosewood --school Hillside --title "Singing" \\
        --start 2026-11-24T14:00 --minutes 45 --rrule "FREQ=WEEKLY;BYDAY=TU"
    twm-server admin occurrences

Care homes and schools may be named by id or by name. Tokens and access codes are printed once,
when they are made, and never again: the server keeps only their hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text
from typer.core import TyperGroup

from session_server.cli import tables
from session_server.cli.client import DEFAULT_SERVER_URL, AdminClient, AdminError
from session_server.cli.secretfile import write_secret


class _AdminGroup(TyperGroup):
    """Every admin command's failures end here: one readable line on stderr, exit status 1."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except AdminError as exc:
            Console(stderr=True, highlight=False).print(f"Error: {exc}", style="red", markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_AdminGroup,
    help="Manage care homes, schools, devices, pairings, sessions and access codes "
    "on a running server.",
    no_args_is_help=True,
)
care_homes_app = typer.Typer(help="Care homes.", no_args_is_help=True)
schools_app = typer.Typer(help="Schools.", no_args_is_help=True)
devices_app = typer.Typer(help="Devices (boxes) and their tokens.", no_args_is_help=True)
pairings_app = typer.Typer(
    help="Which care home makes music with which school.", no_args_is_help=True
)
sessions_app = typer.Typer(help="One-off and recurring sessions.", no_args_is_help=True)
codes_app = typer.Typer(help="Schools' access codes for the school page.", no_args_is_help=True)
app.add_typer(care_homes_app, name="care-homes")
app.add_typer(schools_app, name="schools")
app.add_typer(devices_app, name="devices")
app.add_typer(pairings_app, name="pairings")
app.add_typer(sessions_app, name="sessions")
app.add_typer(codes_app, name="access-codes")


@app.callback()
def connect(
    ctx: typer.Context,
    server: Annotated[
        str, typer.Option(envvar="TWM_SERVER_URL", help="Address of the session server.")
    ] = DEFAULT_SERVER_URL,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="TWM_SERVER_ADMIN_TOKEN",
            show_default=False,
            help="The server's admin token (better: set TWM_SERVER_ADMIN_TOKEN).",
        ),
    ] = None,
) -> None:
    client = AdminClient(server, token)
    ctx.obj = client
    ctx.call_on_close(client.close)


def _client(ctx: typer.Context) -> AdminClient:
    client: AdminClient = ctx.obj  # click hands the group's object down to its commands
    return client


def _console() -> Console:
    return Console(highlight=False)


def _say(text: str) -> None:
    # markup=False: names come from people and may contain [brackets].
    _console().print(text, markup=False)


def _resolve(client: AdminClient, kind: str, path: str, ref: str) -> dict[str, Any]:
    """A care home or school named by id or by (case-insensitive) name."""
    rows: list[dict[str, Any]] = client.get(path)
    for row in rows:
        if str(row["id"]) == ref.strip() or row["name"].casefold() == ref.strip().casefold():
            return row
    known = ", ".join(repr(r["name"]) for r in rows) or "none yet"
    raise AdminError(f"there is no {kind} {ref!r} (known: {known})")


def _care_home(client: AdminClient, ref: str) -> dict[str, Any]:
    return _resolve(client, "care home", "/care-homes", ref)


def _school(client: AdminClient, ref: str) -> dict[str, Any]:
    return _resolve(client, "school", "/schools", ref)


def _show_secret_once(what: str, secret: str) -> None:
    console = _console()
    console.print(
        Panel(
            Text(secret, style="bold"),
            title=f"{what}: shown only this once",
            subtitle="store it now; the server keeps only a hash",
            border_style="yellow",
            expand=False,
        )
    )


# --- care homes and schools ------------------------------------------------------------------


@care_homes_app.command("add")
def care_homes_add(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The care home's name.")]
) -> None:
    """Add a care home."""
    row = _client(ctx).post("/care-homes", {"name": name})
    _say(f"Added care home {row['name']!r} (id {row['id']}).")


@care_homes_app.command("list")
def care_homes_list(ctx: typer.Context) -> None:
    """List care homes."""
    _console().print(tables.organisations("Care homes", _client(ctx).get("/care-homes")))


@schools_app.command("add")
def schools_add(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The school's name.")]
) -> None:
    """Add a school."""
    row = _client(ctx).post("/schools", {"name": name})
    _say(f"Added school {row['name']!r} (id {row['id']}).")


@schools_app.command("list")
def schools_list(ctx: typer.Context) -> None:
    """List schools."""
    _console().print(tables.organisations("Schools", _client(ctx).get("/schools")))


# --- devices ---------------------------------------------------------------------------------


@devices_app.command("add")
def devices_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the box, e.g. rosewood-lounge.")],
    care_home: Annotated[
        str | None, typer.Option(help="The care home it belongs to (id or name).")
    ] = None,
    school: Annotated[
        str | None, typer.Option(help="The school it belongs to (id or name).")
    ] = None,
    save_token: Annotated[
        Path | None,
        typer.Option(help="Write the token to this file (mode 0600) instead of printing it."),
    ] = None,
) -> None:
    """Register a device; its token is shown once."""
    if (care_home is None) == (school is None):
        raise AdminError("give exactly one of --care-home or --school")
    client = _client(ctx)
    body: dict[str, Any] = {"name": name}
    if care_home is not None:
        body["care_home_id"] = _care_home(client, care_home)["id"]
    if school is not None:
        body["school_id"] = _school(client, school)["id"]
    row = client.post("/devices", body)
    owner = row["care_home"] or row["school"]
    _say(f"Registered device {row['name']!r} (id {row['id']}) for {owner['name']!r}.")
    if save_token is not None:
        write_secret(save_token, row["token"])
        _say(f"Its token is in {save_token} (readable by you only); it is not shown again.")
    else:
        _show_secret_once("Device token", row["token"])


@devices_app.command("list")
def devices_list(ctx: typer.Context) -> None:
    """List devices (tokens are never shown)."""
    _console().print(tables.devices(_client(ctx).get("/devices")))


@devices_app.command("revoke")
def devices_revoke(
    ctx: typer.Context, device_id: Annotated[int, typer.Argument(help="The device's id.")]
) -> None:
    """Revoke a device: its token stops working and its connection is closed."""
    row = _client(ctx).post(f"/devices/{device_id}/revoke")
    _say(f"Revoked device {row['name']!r} (id {row['id']}).")


# --- pairings --------------------------------------------------------------------------------


@pairings_app.command("add")
def pairings_add(
    ctx: typer.Context,
    care_home: Annotated[str, typer.Option(help="Care home (id or name).")],
    school: Annotated[str, typer.Option(help="School (id or name).")],
) -> None:
    """Pair a care home with a school."""
    client = _client(ctx)
    body = {
        "care_home_id": _care_home(client, care_home)["id"],
        "school_id": _school(client, school)["id"],
    }
    row = client.post("/pairings", body)
    _say(
        f"Paired {row['care_home']['name']!r} with {row['school']['name']!r} (pairing {row['id']})."
    )


@pairings_app.command("list")
def pairings_list(ctx: typer.Context) -> None:
    """List pairings."""
    _console().print(tables.pairings(_client(ctx).get("/pairings")))


# --- sessions --------------------------------------------------------------------------------


@sessions_app.command("add")
def sessions_add(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="What the session is called.")],
    start: Annotated[
        str, typer.Option(help="First start, local wall-clock time: 2026-11-24T14:00.")
    ],
    minutes: Annotated[int, typer.Option(help="How long it lasts.")] = 45,
    rrule: Annotated[
        str | None, typer.Option(help="Repeat rule, e.g. FREQ=WEEKLY;BYDAY=TU (none: once).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone (default: the server's).")
    ] = None,
    pairing: Annotated[int | None, typer.Option(help="Pairing id.")] = None,
    care_home: Annotated[str | None, typer.Option(help="Care home (id or name).")] = None,
    school: Annotated[str | None, typer.Option(help="School (id or name).")] = None,
) -> None:
    """Schedule a one-off or recurring session of a pairing (or of a care home and a school)."""
    client = _client(ctx)
    body: dict[str, Any] = {
        "title": title,
        "starts_local": start.strip().replace(" ", "T", 1),
        "duration_minutes": minutes,
        "rrule": rrule,
        "timezone": timezone,
    }
    if pairing is not None:
        body["pairing_id"] = pairing
    if care_home is not None:
        body["care_home_id"] = _care_home(client, care_home)["id"]
    if school is not None:
        body["school_id"] = _school(client, school)["id"]
    row = client.post("/sessions", body)
    repeats = f"repeating {row['rrule']}" if row["rrule"] else "once"
    _say(
        f"Scheduled {row['title']!r} (session {row['id']}) for {row['care_home']['name']!r} and "
        f"{row['school']['name']!r}: {row['starts_local'].replace('T', ' ')} {row['timezone']}, "
        f"{row['duration_minutes']} minutes, {repeats}. Next: {tables.when(row['next_starts_at'])}."
    )


@sessions_app.command("list")
def sessions_list(ctx: typer.Context) -> None:
    """List sessions."""
    _console().print(tables.sessions(_client(ctx).get("/sessions")))


@sessions_app.command("cancel")
def sessions_cancel(
    ctx: typer.Context,
    session_id: Annotated[int, typer.Argument(help="The session's id.")],
    at: Annotated[
        str,
        typer.Option(
            help="The occurrence's start, in the session's local time (2026-12-01T14:00) "
            "or with an offset (2026-12-01T14:00Z)."
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
) -> None:
    """Cancel one occurrence of a session."""
    row = _client(ctx).post(
        f"/sessions/{session_id}/cancellations",
        {"occurrence_starts_at": at.strip().replace(" ", "T", 1), "reason": reason},
    )
    _say(
        f"Cancelled the occurrence of session {row['session_id']} starting "
        f"{tables.when(row['occurrence_starts_at'])}."
    )


# --- access codes ----------------------------------------------------------------------------


@codes_app.command("issue")
def codes_issue(
    ctx: typer.Context,
    school: Annotated[str, typer.Option(help="School (id or name).")],
    label: Annotated[str, typer.Option(help="Who holds it, e.g. 'Year 4 teachers'.")] = "",
) -> None:
    """Issue a school access code; it is shown once."""
    client = _client(ctx)
    found = _school(client, school)
    row = client.post(f"/schools/{found['id']}/access-codes", {"label": label})
    _say(f"Issued access code {row['id']} for {found['name']!r}.")
    _show_secret_once("Access code", row["code"])


@codes_app.command("list")
def codes_list(
    ctx: typer.Context, school: Annotated[str, typer.Option(help="School (id or name).")]
) -> None:
    """List a school's access codes (the codes themselves are never shown again)."""
    client = _client(ctx)
    found = _school(client, school)
    rows = client.get(f"/schools/{found['id']}/access-codes")
    _console().print(tables.access_codes(found["name"], rows))


@codes_app.command("revoke")
def codes_revoke(
    ctx: typer.Context, code_id: Annotated[int, typer.Argument(help="The access code's id.")]
) -> None:
    """Revoke an access code: pages signed in with it are disconnected."""
    row = _client(ctx).post(f"/access-codes/{code_id}/revoke")
    _say(f"Revoked access code {row['id']} ({row['label'] or 'no label'}).")


# --- what happens when -----------------------------------------------------------------------


@app.command("occurrences")
def occurrences(
    ctx: typer.Context,
    days: Annotated[int, typer.Option(min=0, max=366, help="Today plus this many days.")] = 7,
) -> None:
    """Today's and upcoming sessions, in each session's local time."""
    rows = _client(ctx).get("/occurrences", days=days)
    if not rows:
        _say(f"No sessions today or in the next {days} days.")
        return
    _console().print(tables.occurrences(rows))


@app.command("audit")
def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many entries.")] = 50,
) -> None:
    """The newest audit log entries."""
    _console().print(tables.audit(_client(ctx).get("/audit", limit=limit)))
