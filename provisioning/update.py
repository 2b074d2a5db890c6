"""``twm-provision update``: a new release beside the old one, switched to, watched, and rolled
back by itself when it does not come up healthy.

    results = await update(UpdateRequest(target, source=Path("."), cache=…), ssh, token, reporter)

Steps after "connect" and "box":

 1. enrolled   the box was enrolled (token, settings, a current release)
 2. release    built here, uploaded, installed in /opt/twm/releases/V beside the running one
 3. switch     /opt/twm/previous → the running release, /opt/twm/current → V, the unit of V,
               restart, then watch for ``watch_seconds``: the service must stay active without a
               restart, and the box must come online at the server. Otherwise: current back to
               the previous release, its unit, restart, and the step fails saying what failed.
 4. prune      after a good switch: releases other than current and previous are removed.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr

from provisioning import installation, journal, service
from provisioning.box_run import BoxRun
from provisioning.build import release_version
from provisioning.device_config import CONFIG_PATH, TOKEN_PATH
from provisioning.enrollment import Enrollment, read_enrollment
from provisioning.errors import HealthFailed, ProvisionError, RemoteFailed, TargetUnsuitable
from provisioning.health import last_seen, watch
from provisioning.plan import Done, Outcome, Reporter, State, Step, StepResult, run_steps
from provisioning.remote import SshOptions
from provisioning.server import ServerClient
from provisioning.target import Target

WATCH_SECONDS = 60.0


@dataclass(frozen=True)
class UpdateRequest:
    target: Target
    source: Path
    cache: Path
    server: str | None = None  # default: the one the box was enrolled with
    watch_seconds: float = WATCH_SECONDS
    dry_run: bool = False


class UpdateRun(BoxRun):
    def __init__(
        self, request: UpdateRequest, ssh: SshOptions, admin_token: SecretStr | None
    ) -> None:
        super().__init__(request.target, ssh)
        self.request = request
        self.admin_token = admin_token
        self.version = release_version(request.source)
        self.enrollment: Enrollment | None = None
        self.previous: str | None = None
        self.stage: str | None = None

    def steps(self) -> list[Step]:
        return [
            *self.first_steps(),
            Step("enrolled", self.check_enrolled, read_only=True),
            Step("release", self.install_release, self.release_present),
            Step("switch", self.switch, self.running_release),
            Step("prune", self.prune, self.pruned),
        ]

    async def check_enrolled(self) -> Done:
        box = self.box
        self.enrollment = await read_enrollment(box)
        current = await installation.current_release(box)
        missing = [
            what
            for what, present in (
                ("its token", await box.exists(TOKEN_PATH, root=True)),
                ("its settings", await box.exists(CONFIG_PATH)),
                ("its enrollment record", self.enrollment is not None),
                ("a current release", current is not None),
            )
            if not present
        ]
        if missing:
            raise TargetUnsuitable(
                f"{box.target} is not enrolled (it lacks {', '.join(missing)}): run "
                "'twm-provision enroll' first"
            )
        record = self.enrollment
        who = f"device #{record.device_id} '{record.name}'" if record else "enrolled"
        return Done(f"{who}, running {current}", Outcome.OK)

    async def release_present(self) -> State:
        return await installation.release_state(self.box, self.version)

    async def install_release(self) -> Done:
        request = self.request
        done = await installation.build_and_install(
            self.box, self.facts, request.source, request.cache, self.version
        )
        self.stage = done.stage
        return Done(
            f"{self.version} installed beside the running release, {done.how} ({done.uploaded} "
            "files uploaded)"
        )

    async def running_release(self) -> State:
        current = await installation.current_release(self.box)
        state = await service.service_state(self.box)
        if current == self.version and state.healthy:
            return State(True, f"running {self.version} ({state.describe()})")
        return State(False, f"would switch from {current} to {self.version} and watch it")

    def _server(self) -> ServerClient | None:
        url = self.request.server or (self.enrollment.server if self.enrollment else None)
        if url is None or self.admin_token is None:
            return None
        return ServerClient(url, self.admin_token)

    async def switch(self) -> Done:
        box = self.box
        old = await installation.current_release(box)
        if old is None:
            raise TargetUnsuitable("the box has no current release: run enroll")
        if old != self.version:
            self.previous = old
            await installation.point(box, installation.PREVIOUS, old)
        else:
            self.previous = await installation.linked_release(box, installation.PREVIOUS)
        device_id = self.enrollment.device_id if self.enrollment else None
        async with AsyncExitStack() as stack:
            server = self._server()
            if server is not None:
                await stack.enter_async_context(server)
            seen = await last_seen(server, device_id) if server and device_id else None
            mark = await journal.cursor(box)
            await installation.switch(box, self.version)
            await self._install_unit_of(self.version)
            try:
                await service.restart(box)
                seen_how = await self._watch(server, device_id, seen)
            except (HealthFailed, RemoteFailed) as exc:
                what = str(exc).rstrip(".")
                said = await journal.output_since(box, mark)
                if said:
                    what += "; it said: " + " | ".join(e.message.rstrip(".") for e in said)
                raise HealthFailed(await self._roll_back(what)) from None
        note = "" if server else " (online at the server not checked: no admin token)"
        return Done(f"{old} → {self.version}, {seen_how}{note}")

    async def _watch(
        self, server: ServerClient | None, device_id: int | None, seen: datetime | None
    ) -> str:
        return await watch(
            self.box,
            server,
            device_id,
            seconds=self.request.watch_seconds,
            seen_before=seen,
        )

    async def _install_unit_of(self, version: str) -> None:
        unit = await installation.release_unit(self.box, version)
        if unit is None:
            return  # a release from before units were kept beside it: leave the unit alone
        if await self.box.read_text(service.UNIT_PATH) != unit:
            await self.box.write_file(service.UNIT_PATH, unit)
            await service.daemon_reload(self.box)

    async def _roll_back(self, what: str) -> str:
        failed = self.version
        previous = self.previous
        if previous is None or previous == failed:
            return (
                f"release {failed} did not come up healthy: {what}. There is no previous "
                "release to go back to: fix the release and run update again."
            )
        try:
            await installation.switch(self.box, previous)
            await self._install_unit_of(previous)
            await service.restart(self.box)
            state = await service.service_state(self.box)
            back = f"rolled back to {previous}, which is {state.describe()}"
        except ProvisionError as exc:
            back = f"rolling back to {previous} failed too: {exc}"
        return (
            f"release {failed} did not come up healthy: {what}. {back}. The failed release "
            f"stays in {installation.release_dir(failed)} to look at; run update again once "
            "it is fixed."
        )

    async def pruned(self) -> State:
        keep = await self._keep()
        extra = [v for v in await installation.complete_releases(self.box) if v not in keep]
        if not extra:
            return State(True, f"kept {', '.join(keep)}")
        return State(False, f"would remove {', '.join(extra)}")

    async def _keep(self) -> list[str]:
        current = await installation.current_release(self.box)
        previous = await installation.linked_release(self.box, installation.PREVIOUS)
        return [v for v in (current, previous) if v is not None]

    async def prune(self) -> Done:
        stage = self.stage or f"{self.facts.home.rstrip('/')}/{installation.STAGE}"
        removed = await installation.prune(self.box, await self._keep(), stage)
        return Done(f"removed {', '.join(removed)}")


async def update(
    request: UpdateRequest,
    ssh: SshOptions,
    admin_token: SecretStr | None,
    reporter: Reporter,
) -> list[StepResult]:
    run = UpdateRun(request, ssh, admin_token)
    try:
        return await run_steps(run.steps(), reporter, dry_run=request.dry_run)
    finally:
        await run.close()
