"""``twm-provision check``: one screen a technician reads at a glance. It only reads.

    report = await check_box(target, ssh, admin_token)
    report.healthy, report.rows     # [("Service", "active (running)", True), …]

Rows: the box, its service (state, restarts, the agent's own status line), the release it runs,
the server as seen from the box, the box's state, its sound cards, whether the server sees it
online, its last errors, free disk and temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from provisioning import installation
from provisioning.device_cli import status
from provisioning.enrollment import read_enrollment
from provisioning.errors import ProvisionError
from provisioning.facts import gather
from provisioning.journal import last_errors
from provisioning.remote import Remote, SshOptions, connect
from provisioning.server import ServerClient
from provisioning.service import service_state
from provisioning.target import Target

TEMPERATURE = "/sys/class/thermal/thermal_zone0/temp"
HOT_CELSIUS = 80.0  # a Pi throttles from 80 °C


@dataclass(frozen=True)
class Row:
    name: str
    value: str
    ok: bool | None = None  # None: information, neither good nor bad


@dataclass
class CheckReport:
    target: Target
    rows: list[Row] = field(default_factory=list)

    def add(self, name: str, value: str, ok: bool | None = None) -> None:
        self.rows.append(Row(name, value, ok))

    @property
    def problems(self) -> list[Row]:
        return [row for row in self.rows if row.ok is False]

    @property
    def healthy(self) -> bool:
        return not self.problems


def parse_temperature(text: str | None) -> float | None:
    """``thermal_zone0/temp`` holds millidegrees Celsius: ``48312`` → 48.3."""
    if text is None:
        return None
    try:
        return int(text.strip()) / 1000
    except ValueError:
        return None


async def _online(
    box: Remote, admin_token: SecretStr | None, server_url: str | None
) -> tuple[str, bool | None]:
    record = await read_enrollment(box)
    if record is None:
        return "not enrolled (no /etc/twm/enrollment.json)", False
    if admin_token is None:
        return f"device #{record.device_id}: not asked (no admin token)", None
    async with ServerClient(server_url or record.server, admin_token) as server:
        try:
            device = await server.device(record.device_id)
        except ProvisionError as exc:
            return str(exc), False
    if device is None:
        return f"device #{record.device_id} is not registered at the server", False
    if device.revoked_at is not None:
        return f"device #{record.device_id} is revoked", False
    online = device.online
    if online is None:  # a server that does not say: only when it last connected
        return f"device #{record.device_id}, last seen {device.last_seen_at or 'never'}", None
    return f"device #{record.device_id} {'online' if online else 'OFFLINE'}", online


async def inspect(
    box: Remote, admin_token: SecretStr | None, server_url: str | None = None
) -> CheckReport:
    report = CheckReport(box.target)
    facts = await gather(box)
    report.add("Box", facts.describe())
    state = await service_state(box)
    service = state.describe() + (f" — {state.status_text}" if state.status_text else "")
    if not state.installed:
        service = "not installed: run 'twm-provision enroll'"
    report.add("Service", service, state.healthy)
    current = await installation.current_release(box)
    previous = await installation.linked_release(box, installation.PREVIOUS)
    version = current or "none installed"
    if previous and previous != current:
        version += f" (previous: {previous})"
    report.add("Version", version, current is not None)
    if current is not None:
        try:
            box_report = await status(box)
        except ProvisionError as exc:
            report.add("Box report", str(exc), False)
        else:
            server = box_report.server
            reachable = "reachable" if server.reachable else "UNREACHABLE"
            report.add("Server from box", f"{reachable}: {server.detail}", server.reachable)
            report.add("Box state", box_report.state or "unknown", box_report.agent.running)
            in_use = box_report.in_use()
            cards = ", ".join(card.name for card in box_report.cards)
            if not cards and box_report.agent.running:
                cards = "held by the box (listed below)"
            report.add("Sound cards", cards or "none found", bool(cards))
            for direction, name in in_use.items():
                report.add(f"  {direction}", name, not name.startswith("none"))
    online, ok = await _online(box, admin_token, server_url)
    report.add("At the server", online, ok)
    errors = await last_errors(box)
    if errors:
        for entry in errors:
            report.add("Last error", f"{entry.at:%Y-%m-%d %H:%M:%S} {entry.message}")
    else:
        report.add("Last errors", "none in the journal")
    disk = facts.root_disk
    free = disk.available / 1024**3
    report.add("Disk", f"{free:.1f} GiB free of {disk.size / 1024**3:.1f} GiB", free >= 0.5)
    celsius = parse_temperature(await box.read_text(TEMPERATURE))
    if celsius is None:
        report.add("Temperature", "n/a")
    else:
        report.add("Temperature", f"{celsius:.1f} °C", celsius < HOT_CELSIUS)
    return report


async def check_box(
    target: Target, ssh: SshOptions, admin_token: SecretStr | None, server_url: str | None = None
) -> CheckReport:
    async with await connect(target, ssh) as box:
        return await inspect(box, admin_token, server_url)
