"""``twm-provision``: the technician's command line.

    twm-provision enroll 192.168.1.50 --care-home 3 --server https://twm.example.org
    twm-provision check 192.168.1.50
    twm-provision update 192.168.1.50
    twm-provision fleet boxes.toml check --parallel 8
    twm-provision forget 192.168.1.50          # after re-imaging a box: drop its pinned key

The server's admin token comes from ``$TWM_PROVISION_ADMIN_TOKEN`` or ``--admin-token-file``,
never from an argument (``ps`` would show it). Exit status: 0 all went well, 1 something failed
(the last line says what to do), 2 the command was wrong.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from enum import StrEnum
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from rich.text import Text

from provisioning.build import default_cache, default_source
from provisioning.check import CheckReport, check_box
from provisioning.device_config import parse_assignments
from provisioning.enroll import EnrollRequest, enroll
from provisioning.errors import ProvisionError, UsageError
from provisioning.fleet import FleetResult, run_fleet
from provisioning.inventory import Box, Inventory, load_inventory
from provisioning.known_hosts import ENV as KNOWN_HOSTS_ENV
from provisioning.known_hosts import KnownHosts, pattern
from provisioning.plan import Outcome, Reporter, StepResult, failed, summarize
from provisioning.progress import StepLines, fleet_progress, steps_table
from provisioning.remote import SshOptions
from provisioning.server import ADMIN_TOKEN_ENV, load_admin_token
from provisioning.target import Target
from provisioning.update import WATCH_SECONDS, UpdateRequest, update
from session_server.protocol import PartyKind

app = typer.Typer(
    name="twm-provision",
    help="Provision, check and update care-home boxes over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print a token
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

T = TypeVar("T")

# --- options shared by the commands -----------------------------------------------------------

UserOption = Annotated[str, typer.Option("--user", help="Login user on the box.")]
PortOption = Annotated[int, typer.Option("--port", help="SSH port of the box.", min=1, max=65535)]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="TWM_PROVISION_SERVER",
        help="The session server's address as this machine reaches it, e.g. "
        "https://twm.example.org [env TWM_PROVISION_SERVER].",
        show_envvar=False,
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--admin-token-file",
        help=f"File holding the server's admin token [default: ${ADMIN_TOKEN_ENV}].",
    ),
]
IdentityOption = Annotated[
    Path | None,
    typer.Option(
        "--identity",
        "-i",
        envvar="TWM_PROVISION_IDENTITY",
        show_envvar=False,
        help="SSH private key [default: your ssh-agent and ~/.ssh/id_*; env "
        "TWM_PROVISION_IDENTITY].",
    ),
]
KnownHostsOption = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        help=f"twm-provision's own pinned host keys [default: ${KNOWN_HOSTS_ENV} or "
        "~/.config/twm-provision/known_hosts].",
    ),
]
AcceptNewOption = Annotated[
    bool,
    typer.Option(
        "--accept-new-host-key",
        help="Pin a box's host key on first contact without asking (a changed key is still "
        "refused).",
    ),
]
SourceOption = Annotated[
    Path | None,
    typer.Option(
        "--source",
        help="Checkout of twm-appliance to build the release from [default: the one this tool "
        "runs from].",
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
WatchOption = Annotated[
    float,
    typer.Option(
        "--watch-seconds", min=0, help="How long to watch a new release before keeping it."
    ),
]


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work``; a ``ProvisionError`` becomes its sentence and exit status 1 (2: usage)."""
    try:
        return asyncio.run(work)
    except UsageError as exc:
        errors.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    except ProvisionError as exc:
        errors.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        errors.print(
            "interrupted: run the same command again, it carries on where it stopped",
            style="yellow",
        )
        raise typer.Exit(130) from None


def _confirm_key(target: Target, fingerprint: str) -> bool:
    console.print(
        f"First contact with {target}. Its SSH host key fingerprint is:\n  [bold]{fingerprint}"
        "[/]\nCompare it with the box's own (on its console: "
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)."
    )
    return typer.confirm("Is it the same? Pin it and carry on", default=False)


def _ssh(
    known_hosts: Path | None,
    identity: Path | None,
    accept_new: bool,
    *,
    dry_run: bool = False,
    interactive: bool = True,
) -> SshOptions:
    if identity is not None and not identity.expanduser().is_file():
        raise typer.BadParameter(f"no key file at {identity}", param_hint="--identity")
    return SshOptions(
        known_hosts=KnownHosts.default(known_hosts),
        identity=identity.expanduser() if identity else None,
        accept_new_host_key=accept_new,
        confirm_new_key=_confirm_key if interactive and sys.stdin.isatty() else None,
        pin_new_keys=not dry_run,
    )


def _target(host: str, port: int, user: str) -> Target:
    try:
        return Target(host=host, port=port, user=user)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).splitlines()[-1]) from None


def _source(source: Path | None) -> Path:
    chosen = source or default_source()
    if chosen is None:
        raise typer.BadParameter(
            "this tool is not running from a checkout: pass --source with one",
            param_hint="--source",
        )
    return chosen


def _finish(results: list[StepResult], dry_run: bool, title: str = "") -> None:
    if title:
        console.print()
        console.print(steps_table(results, title))
    sentence = summarize(results, dry_run=dry_run)
    failure = failed(results)
    if failure is not None:
        errors.print(f"✗ {sentence}", style="red", markup=False)
        raise typer.Exit(1)
    console.print(Text(f"✓ {sentence}", style="green"))


# --- commands ---------------------------------------------------------------------------------


@app.callback()
def main() -> None:
    """Provision, check and update care-home boxes over SSH."""


@app.command("enroll")
def enroll_command(
    host: Annotated[str, typer.Argument(help="The box's address (or name).")],
    care_home: Annotated[
        int | None, typer.Option("--care-home", min=1, help="The care home's ID at the server.")
    ] = None,
    school: Annotated[
        int | None, typer.Option("--school", min=1, help="The school's ID at the server.")
    ] = None,
    server: ServerOption = None,
    box_server_url: Annotated[
        str | None,
        typer.Option(
            "--box-server-url",
            help="The server's WebSocket as the box reaches it [default: from --server: "
            "https://HOST → wss://HOST/ws].",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The device's name at the server [default: its hostname]."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A setting of the box, KEY=VALUE, e.g. audio.input=Jabra (repeatable).",
        ),
    ] = None,
    user: UserOption = "pi",
    port: PortOption = 22,
    dry_run: DryRunOption = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not show the plan and ask first.")
    ] = False,
    online_timeout: Annotated[
        float, typer.Option("--online-timeout", min=1, help="Seconds to wait for the box.")
    ] = 180.0,
    admin_token_file: TokenFileOption = None,
    identity: IdentityOption = None,
    known_hosts: KnownHostsOption = None,
    accept_new_host_key: AcceptNewOption = False,
    source: SourceOption = None,
) -> None:
    """Turn a freshly imaged Pi into an enrolled, running, verified box.

    Safe to run again: a box already as wanted is left alone ("nothing to change"), and a run
    that was interrupted carries on.
    """
    if (care_home is None) == (school is None):
        raise typer.BadParameter("give exactly one of --care-home ID or --school ID")
    if server is None:
        raise typer.BadParameter("give the server's address", param_hint="--server")
    role = PartyKind.CARE_HOME if care_home is not None else PartyKind.SCHOOL
    try:
        request = EnrollRequest(
            target=_target(host, port, user),
            role=role,
            party_id=care_home or school or 0,
            server=server,
            source=_source(source),
            cache=default_cache(),
            box_server_url=box_server_url,
            name=name,
            overrides=parse_assignments(settings or []),
            dry_run=dry_run,
            online_limit=online_timeout,
        )
        request.config()  # a wrong setting stops here, before anything is touched
        token = load_admin_token(admin_token_file)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    ssh = _ssh(known_hosts, identity, accept_new_host_key, dry_run=dry_run)
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise typer.BadParameter("pass --yes to enroll without being asked (no terminal)")
        plan_ssh = _ssh(known_hosts, identity, accept_new_host_key, dry_run=True)
        console.print(f"[bold]Plan for {request.target}[/]")
        plan = _run(enroll(_dry(request), plan_ssh, token, StepLines(console)))
        if failed(plan) is not None:
            _finish(plan, dry_run=True)
        would_change = any(r.outcome is Outcome.WOULD_CHANGE for r in plan)
        if would_change and not typer.confirm("Go ahead", default=True):
            raise typer.Exit(1)
        console.print()
    reporter = StepLines(console)
    results = _run(enroll(request, ssh, token, reporter))
    _finish(results, dry_run, f"enroll {request.target}" + (" (dry run)" if dry_run else ""))


def _dry(request: EnrollRequest) -> EnrollRequest:
    from dataclasses import replace

    return replace(request, dry_run=True)


def _admin_token(path: Path | None) -> SecretStr | None:
    """The admin token (from the file or the environment), or the usage error typer shows."""
    try:
        return load_admin_token(path)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None


def _check_table(report: CheckReport) -> Table:
    table = Table(title=f"{report.target}", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for row in report.rows:
        style = {True: "green", False: "red", None: ""}[row.ok]
        table.add_row(row.name, Text(row.value, style=style))
    return table


@app.command("check")
def check_command(
    host: Annotated[str, typer.Argument(help="The box's address (or name).")],
    user: UserOption = "pi",
    port: PortOption = 22,
    server: ServerOption = None,
    admin_token_file: TokenFileOption = None,
    identity: IdentityOption = None,
    known_hosts: KnownHostsOption = None,
    accept_new_host_key: AcceptNewOption = False,
) -> None:
    """One screen: service, version, server, sound cards, last errors, disk, temperature."""
    token = _admin_token(admin_token_file)
    ssh = _ssh(known_hosts, identity, accept_new_host_key)
    report = _run(check_box(_target(host, port, user), ssh, token, server))
    console.print(_check_table(report))
    if not report.healthy:
        names = ", ".join(row.name.strip() for row in report.problems)
        errors.print(
            f"✗ look at: {names}. 'twm-provision update' installs a fixed release; "
            "docs/provisioning.md lists what each line means.",
            style="red",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(Text("✓ healthy", style="green"))


@app.command("update")
def update_command(
    host: Annotated[str, typer.Argument(help="The box's address (or name).")],
    user: UserOption = "pi",
    port: PortOption = 22,
    server: ServerOption = None,
    watch_seconds: WatchOption = WATCH_SECONDS,
    dry_run: DryRunOption = False,
    admin_token_file: TokenFileOption = None,
    identity: IdentityOption = None,
    known_hosts: KnownHostsOption = None,
    accept_new_host_key: AcceptNewOption = False,
    source: SourceOption = None,
) -> None:
    """Install the new release beside the old, switch, watch it; roll back if it is unwell."""
    token = _admin_token(admin_token_file)
    request = UpdateRequest(
        target=_target(host, port, user),
        source=_source(source),
        cache=default_cache(),
        server=server,
        watch_seconds=watch_seconds,
        dry_run=dry_run,
    )
    ssh = _ssh(known_hosts, identity, accept_new_host_key, dry_run=dry_run)
    results = _run(update(request, ssh, token, StepLines(console)))
    _finish(results, dry_run, f"update {request.target}" + (" (dry run)" if dry_run else ""))


@app.command("forget")
def forget_command(
    host: Annotated[str, typer.Argument(help="The box's address (or name).")],
    port: PortOption = 22,
    known_hosts: KnownHostsOption = None,
) -> None:
    """Drop the host key pinned for a box (after it was re-imaged or replaced)."""
    pins = KnownHosts.default(known_hosts)
    dropped = pins.forget(host, port)
    if not dropped:
        console.print(f"no key was pinned for {pattern(host, port)} in {pins.path}")
        return
    console.print(
        f"dropped {dropped} key(s) of {pattern(host, port)}; the next contact shows the new "
        "fingerprint to confirm"
    )


class FleetAction(StrEnum):
    ENROLL = "enroll"
    CHECK = "check"
    UPDATE = "update"


def _fleet_job(
    action: FleetAction,
    inventory: Inventory,
    ssh: SshOptions,
    token: Any,
    source: Path,
    server: str | None,
    dry_run: bool,
    watch_seconds: float,
) -> Any:
    async def job(box: Box, reporter: Reporter) -> tuple[bool, str]:
        target = inventory.target(box)
        if action is FleetAction.CHECK:
            report = await check_box(target, ssh, token, server or inventory.server)
            if report.healthy:
                return True, "healthy"
            return False, "look at: " + ", ".join(r.name.strip() for r in report.problems)
        if action is FleetAction.ENROLL:
            base = server or inventory.server
            if base is None:
                raise UsageError("give the server: --server or server = … in the inventory")
            results = await enroll(
                EnrollRequest(
                    target=target,
                    role=box.role,
                    party_id=box.party_id,
                    server=base,
                    source=source,
                    cache=default_cache(),
                    box_server_url=inventory.box_server_url,
                    name=box.name,
                    overrides=inventory.settings(box),
                    dry_run=dry_run,
                ),
                ssh,
                token,
                reporter,
            )
        else:
            results = await update(
                UpdateRequest(
                    target=target,
                    source=source,
                    cache=default_cache(),
                    server=server or inventory.server,
                    watch_seconds=watch_seconds,
                    dry_run=dry_run,
                ),
                ssh,
                token,
                reporter,
            )
        return failed(results) is None, summarize(results, dry_run=dry_run)

    return job


def _fleet_table(results: list[FleetResult]) -> Table:
    table = Table(title="Fleet", title_justify="left")
    table.add_column("Box", style="bold")
    table.add_column("Result")
    table.add_column("Detail", overflow="fold")
    for result in results:
        mark = Text("✓ ok", style="green") if result.ok else Text("✗ failed", style="red")
        table.add_row(result.box, mark, result.summary)
    return table


@app.command("fleet")
def fleet_command(
    inventory_file: Annotated[Path, typer.Argument(help="The TOML inventory of boxes.")],
    action: Annotated[FleetAction, typer.Argument(help="What to do to every box.")],
    parallel: Annotated[
        int, typer.Option("--parallel", "-j", min=1, max=64, help="Boxes at a time.")
    ] = 4,
    server: ServerOption = None,
    dry_run: DryRunOption = False,
    watch_seconds: WatchOption = WATCH_SECONDS,
    admin_token_file: TokenFileOption = None,
    identity: IdentityOption = None,
    known_hosts: KnownHostsOption = None,
    accept_new_host_key: AcceptNewOption = False,
    source: SourceOption = None,
) -> None:
    """Enroll, check or update every box of an inventory, several at a time."""
    try:
        inventory = load_inventory(inventory_file)
        token = load_admin_token(admin_token_file)
    except UsageError as exc:
        errors.print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(2) from None
    chosen = _source(source) if action is not FleetAction.CHECK else Path(".")
    # Nobody can answer a host-key question for several boxes at once.
    ssh = _ssh(known_hosts, identity, accept_new_host_key, dry_run=dry_run, interactive=False)
    job = _fleet_job(action, inventory, ssh, token, chosen, server, dry_run, watch_seconds)

    async def work() -> list[FleetResult]:
        with fleet_progress(console) as progress:
            return await run_fleet(inventory.box, job, parallel=parallel, progress=progress)

    results = _run(work())
    console.print(_fleet_table(results))
    bad = [r.box for r in results if not r.ok]
    if bad:
        errors.print(
            f"✗ {len(bad)} of {len(results)} failed: {', '.join(bad)}. Fix those and run the "
            "same command again (the others are left as they are).",
            style="red",
            markup=False,
        )
        raise typer.Exit(1)
    console.print(Text(f"✓ all {len(results)} boxes ok", style="green"))


@app.command()
def version() -> None:
    """Print the installed version of the appliance software."""
    typer.echo(distribution_version("twm-appliance"))
