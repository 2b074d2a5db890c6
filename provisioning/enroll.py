"""``twm-provision enroll``: a freshly imaged Pi becomes an enrolled, running, verified box.

    request = EnrollRequest(target=Target(host="10.0.0.7"), role=PartyKind.CARE_HOME,
                            party_id=3, server="https://twm.example.org", source=Path("."))
    results = await enroll(request, ssh, admin_token, reporter)

Each step checks before it changes anything (:mod:`provisioning.plan`), so a second run changes
nothing and an interrupted run carries on. The steps, in order:

 1. connect        SSH, the host key pinned on first contact (confirmed by the technician)
 2. box            OS, processor, Python, free disk: is this a box we can set up?
 3. registration   only when the box has no token: register at the server, store the token
 4. packages       the Debian packages the box needs, installed only when missing
 5. service user   twm-device, in the audio and gpio groups
 6. release        wheel + wheelhouse built here, uploaded, installed in /opt/twm/releases/V
 7. current        /opt/twm/current → that release
 8. settings       /etc/twm/device.toml
 9. unit           /etc/systemd/system/twm-device.service
10. audio test     twm-device test-audio, while the sound card is free (service not running)
11. service        enabled, and (re)started when anything it runs from changed
12. online         the box reports to the server
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from provisioning import installation, packages, service, service_user
from provisioning.box_run import BoxRun
from provisioning.build import release_version
from provisioning.device_cli import self_test, status
from provisioning.device_config import (
    CONFIG_PATH,
    TOKEN_PATH,
    DeviceConfig,
    box_server_url,
    build_config,
)
from provisioning.enrollment import Enrollment, read_enrollment, write_enrollment
from provisioning.errors import ServerFailed, TargetUnsuitable, UsageError
from provisioning.health import last_seen, wait_online
from provisioning.plan import Done, Outcome, Reporter, State, Step, StepResult, run_steps
from provisioning.remote import SshOptions
from provisioning.server import ServerClient
from provisioning.target import Target
from session_server.protocol import PartyKind

ONLINE_LIMIT = 180.0

T = TypeVar("T")


@dataclass(frozen=True)
class EnrollRequest:
    target: Target
    role: PartyKind
    party_id: int
    server: str  # the admin API's base address, as this machine reaches it
    source: Path
    cache: Path
    box_server_url: str | None = None  # the server's WebSocket as the box reaches it
    name: str | None = None  # the device's name at the server; default: the box's hostname
    overrides: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    online_limit: float = ONLINE_LIMIT

    def config(self) -> DeviceConfig:
        return build_config(
            self.box_server_url or box_server_url(self.server), self.role, self.overrides
        )


async def _finish_even_if_cancelled(work: Awaitable[T]) -> T:
    """Runs ``work`` to its end even when Ctrl-C cancels the caller meanwhile: a token the server
    has just issued must reach the box, or the registration would be lost with it."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


class EnrollRun(BoxRun):
    """One enroll run against one box; its steps share what earlier steps found."""

    def __init__(self, request: EnrollRequest, ssh: SshOptions, server: ServerClient) -> None:
        super().__init__(request.target, ssh)
        self.request = request
        self.server = server
        self.config = request.config()
        self.version = release_version(request.source)
        self.unit_text = (request.source / "systemd" / "twm-device.service").read_text()
        self.restart_needed = False
        self.device_id: int | None = None
        self.seen_before: datetime | None = None
        self._missing: list[str] = []
        self._units_on: list[str] = []

    def steps(self) -> list[Step]:
        return [
            *self.first_steps(),
            Step("registration", self.register, self.registered),
            Step("packages", self.install_packages, self.packages_present),
            Step("service user", self.create_user, self.user_present),
            Step("release", self.install_release, self.release_present),
            Step("current", self.switch_current, self.current_is_release),
            Step("settings", self.write_settings, self.settings_written),
            Step("unit", self.install_unit, self.unit_installed),
            Step("audio test", self.test_audio),
            Step("service", self.start_service, self.service_running),
            Step("online", self.wait_online),
        ]

    # --- 3: registration ----------------------------------------------------------------------

    @property
    def device_name(self) -> str:
        return self.request.name or self.facts.hostname

    def _party(self) -> str:
        role = self.request.role
        return f"{'care home' if role is PartyKind.CARE_HOME else 'school'} {self.request.party_id}"

    async def registered(self) -> State:
        has_token = await self.box.exists(TOKEN_PATH, root=True)
        record = await read_enrollment(self.box)
        if has_token and record is not None:
            if record.server.rstrip("/") != self.request.server.rstrip("/"):
                raise UsageError(
                    f"this box is enrolled with {record.server}, not {self.request.server}: "
                    "to move it, revoke it there and wipe /etc/twm on the box first"
                )
            self.device_id = record.device_id
            return State(True, f"device #{record.device_id} '{record.name}', the box has its token")
        if not has_token:
            existing = await self.server.device_named(self.device_name)
            if existing is not None and existing.revoked_at is None:
                raise ServerFailed(self._clash(existing.id))
        return State(
            False, f"would register '{self.device_name}' for {self._party()} and store its token"
        )

    def _clash(self, device_id: int) -> str:
        return (
            f"a device named '{self.device_name}' is already registered at the server "
            f"(#{device_id}) but this box has no token for it (an earlier enroll stopped right "
            f"after registering, or the box was re-imaged). Revoke #{device_id} ('twm-server "
            f"admin devices revoke {device_id}') and enroll again, or enroll with another --name."
        )

    async def register(self) -> Done:
        name = self.device_name
        existing = await self.server.device_named(name)
        if (
            existing is not None
            and existing.revoked_at is None
            and await self.box.exists(TOKEN_PATH, root=True)
        ):
            # The token was stored and then the run stopped: write down what it belongs to.
            await self._record(existing.id, existing.name)
            self.device_id = existing.id
            return Done(f"device #{existing.id} '{name}': the box's record of it completed")
        if existing is not None and existing.revoked_at is None:
            raise ServerFailed(self._clash(existing.id))
        request = self.request
        care_home = request.party_id if request.role is PartyKind.CARE_HOME else None
        school = request.party_id if request.role is PartyKind.SCHOOL else None

        async def register_and_store() -> int:
            registration = await self.server.register_device(
                name, care_home_id=care_home, school_id=school
            )
            await self._store_token(registration.token)
            await self._record(registration.id, registration.name)
            return registration.id

        self.device_id = await _finish_even_if_cancelled(register_and_store())
        self.restart_needed = True
        return Done(f"registered as device #{self.device_id} '{name}' for {self._party()}")

    async def _record(self, device_id: int, name: str) -> None:
        record = Enrollment(
            device_id=device_id,
            name=name,
            server=self.request.server,
            role=self.request.role,
            party_id=self.request.party_id,
            enrolled_at=datetime.now(UTC),
        )
        await write_enrollment(self.box, record)

    async def _store_token(self, token: SecretStr) -> None:
        # root only, 0600: systemd reads it and hands it to the service as a credential.
        await self.box.write_file(TOKEN_PATH, token.get_secret_value() + "\n", mode="0600")

    # --- 4, 5: packages and the service user --------------------------------------------------

    async def packages_present(self) -> State:
        wanted = await packages.wanted_packages(self.box)
        self._missing = await packages.missing_packages(self.box, wanted)
        # Before the install, the units are not there yet: looked at again after it.
        self._units_on = await packages.user_units_on(self.box)
        if not self._missing and not self._units_on:
            return State(True, f"all {len(wanted)} installed")
        plan = [f"install {' '.join(self._missing)}"] if self._missing else []
        plan += [f"stop {unit} starting in every login" for unit in self._units_on]
        return State(False, f"would {' and '.join(plan)}")

    async def install_packages(self) -> Done:
        done = []
        if self._missing:
            await packages.install(self.box, self._missing)
            done.append(f"installed {' '.join(self._missing)}")
        units_on = await packages.user_units_on(self.box)
        if units_on:
            await packages.turn_off_user_units(self.box, units_on)
            done.append(f"{', '.join(units_on)} no longer starts in every login")
        return Done("; ".join(done))

    async def user_present(self) -> State:
        return await service_user.check(self.box)

    async def create_user(self) -> Done:
        return await service_user.apply(self.box)

    # --- 6, 7: the release --------------------------------------------------------------------

    async def release_present(self) -> State:
        return await installation.release_state(self.box, self.version)

    async def install_release(self) -> Done:
        request = self.request
        done = await installation.build_and_install(
            self.box, self.facts, request.source, request.cache, self.version
        )
        return Done(f"{self.version} installed {done.how} ({done.uploaded} files uploaded)")

    async def current_is_release(self) -> State:
        current = await installation.current_release(self.box)
        if current == self.version:
            return State(True, f"{installation.CURRENT} → {self.version}")
        return State(
            False, f"would point {installation.CURRENT} at {self.version} (now {current or 'none'})"
        )

    async def switch_current(self) -> Done:
        await installation.switch(self.box, self.version)
        self.restart_needed = True
        return Done(f"{installation.CURRENT} → {self.version}")

    # --- 8, 9: settings and unit --------------------------------------------------------------

    async def settings_written(self) -> State:
        text = await self.box.read_text(CONFIG_PATH, root=True)
        if text == self.config.render():
            return State(True, CONFIG_PATH)
        return State(False, f"would {'write' if text is None else 'update'} {CONFIG_PATH}")

    async def write_settings(self) -> Done:
        await self.box.write_file(CONFIG_PATH, self.config.render(), mode="0644")
        self.restart_needed = True
        return Done(f"wrote {CONFIG_PATH}")

    async def unit_installed(self) -> State:
        text = await self.box.read_text(service.UNIT_PATH)
        if text == self.unit_text:
            return State(True, service.UNIT_PATH)
        return State(False, f"would install {service.UNIT_PATH}")

    async def install_unit(self) -> Done:
        await self.box.write_file(service.UNIT_PATH, self.unit_text, mode="0644")
        await service.daemon_reload(self.box)
        self.restart_needed = True
        return Done(f"installed {service.UNIT_PATH}, systemd reloaded")

    # --- 10-12: start and verify --------------------------------------------------------------

    async def test_audio(self) -> Done:
        state = await service.service_state(self.box) if self.facts.systemd else None
        if state is not None and state.active_state in ("active", "activating", "reloading"):
            # The running box holds the sound card: report what it uses instead of fighting it.
            report = await status(self.box)
            chosen = ", ".join(f"{k}: {v}" for k, v in report.in_use().items()) or "none"
            return Done(
                f"not repeated while the box uses its sound card ({chosen})", Outcome.SKIPPED
            )
        outcome, words = await self_test(self.box)
        return Done(words, outcome)

    async def service_running(self) -> State:
        if not self.facts.systemd:
            return State(False, "would enable and start twm-device (systemd is not running now)")
        state = await service.service_state(self.box)
        if state.enabled and state.healthy and not self.restart_needed:
            return State(True, f"enabled, {state.describe()}")
        verb = "restart" if state.healthy else "start"
        return State(False, f"would enable and {verb} twm-device ({state.describe()})")

    async def start_service(self) -> Done:
        if not self.facts.systemd:
            raise TargetUnsuitable(
                f"systemd is not running on {self.box.target} (a container or chroot?): the box "
                "must boot Raspberry Pi OS or Debian normally"
            )
        if self.device_id is not None:
            self.seen_before = await last_seen(self.server, self.device_id)
        await service.enable(self.box)
        await service.restart(self.box)
        state = await service.service_state(self.box)
        return Done(f"enabled and started ({state.describe()})")

    async def wait_online(self) -> Done:
        if self.device_id is None:
            raise ServerFailed("the box's device number is unknown: run enroll again")
        record = await wait_online(
            self.server,
            self.device_id,
            seen_before=self.seen_before,
            limit=self.request.online_limit,
        )
        how = "online now" if record.online else f"last seen {record.last_seen_at}"
        return Done(f"device #{record.id} '{record.name}' {how}", Outcome.OK)


async def enroll(
    request: EnrollRequest,
    ssh: SshOptions,
    admin_token: SecretStr | None,
    reporter: Reporter,
) -> list[StepResult]:
    """Runs every step against one box; the results say what was (or would be) done."""
    if admin_token is None:
        raise UsageError(
            "enroll needs the server's admin token: set TWM_PROVISION_ADMIN_TOKEN or pass "
            "--admin-token-file"
        )
    async with ServerClient(request.server, admin_token) as server:
        run = EnrollRun(request, ssh, server)
        try:
            return await run_steps(run.steps(), reporter, dry_run=request.dry_run)
        finally:
            await run.close()
