"""The box's systemd service as ``systemctl show`` describes it.

    state = await service_state(box)
    state.active_state, state.sub_state, state.n_restarts   # 'active', 'running', 0
    state.healthy                                           # active and running

Read as ``KEY=VALUE`` lines from ``systemctl show -p …`` (never by scraping ``systemctl status``,
whose layout is for people) and parsed into a typed model here, where they enter.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioning.errors import RemoteFailed
from provisioning.remote import Remote

UNIT = "twm-device.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"

# systemctl show's property names, and the model field each becomes.
PROPERTIES = {
    "LoadState": "load_state",
    "ActiveState": "active_state",
    "SubState": "sub_state",
    "NRestarts": "n_restarts",
    "UnitFileState": "unit_file_state",
    "MainPID": "main_pid",
    "ExecMainStatus": "exec_main_status",
    "Result": "result",
    "StatusText": "status_text",
}


class ServiceState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    load_state: str = Field(min_length=1)
    active_state: str = Field(min_length=1)
    sub_state: str = ""
    n_restarts: int = Field(default=0, ge=0)
    unit_file_state: str = ""
    main_pid: int = Field(default=0, ge=0)
    exec_main_status: int = 0
    result: str = ""
    status_text: str = ""

    @property
    def installed(self) -> bool:
        return self.load_state == "loaded"

    @property
    def enabled(self) -> bool:
        return self.unit_file_state == "enabled"

    @property
    def healthy(self) -> bool:
        return self.active_state == "active" and self.sub_state == "running"

    def describe(self) -> str:
        words = f"{self.active_state} ({self.sub_state})" if self.sub_state else self.active_state
        if self.n_restarts:
            words += f", restarted {self.n_restarts} times"
        if self.active_state == "failed" and self.result:
            words += f", {self.result}"
        return words


def parse_systemctl_show(text: str) -> ServiceState:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in PROPERTIES:
            values[PROPERTIES[key]] = value
    # systemd prints "[not set]" or "" for numbers it does not have (a unit never started).
    for number in ("n_restarts", "main_pid", "exec_main_status"):
        if not values.get(number, "").isdigit():
            values.pop(number, None)
    try:
        return ServiceState.model_validate(values)
    except ValidationError:
        raise RemoteFailed(
            "the box's systemd did not describe the twm-device service (systemctl show): "
            "is systemd running there?"
        ) from None


async def service_state(box: Remote) -> ServiceState:
    result = await box.run(["systemctl", "show", UNIT, "-p", ",".join(PROPERTIES)])
    return parse_systemctl_show(result.stdout)


async def daemon_reload(box: Remote) -> None:
    await box.run(["systemctl", "daemon-reload"], root=True)


async def restart(box: Remote, limit: float = 300.0) -> None:
    """(Re)starts the service and waits for it: with ``Type=notify`` until the box says READY.

    ``reset-failed`` first: after a crashing release systemd's start limit may have been hit,
    and it would refuse even a good release until that is cleared.
    """
    await box.run(["systemctl", "reset-failed", UNIT], root=True, check=False)
    result = await box.run(["systemctl", "restart", UNIT], root=True, check=False, limit=limit)
    if not result.ok:
        state = await service_state(box)
        raise RemoteFailed(
            f"the twm-device service did not start on {box.target}: it is {state.describe()}"
            + (f" ({state.status_text})" if state.status_text else "")
        )


async def enable(box: Remote) -> None:
    await box.run(["systemctl", "enable", UNIT], root=True)
