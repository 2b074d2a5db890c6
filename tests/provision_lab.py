"""The provisioning tool against the test VM, as a technician runs it: a session server on the
host (exposed to the guest as ``twm-host``), the ``twm-provision`` command with the admin token in
its environment, and the release built from a frozen copy of this checkout. Shared by
tests/test_provision_vm.py and bench/provision.py.

    with lab_for(vm, workdir) as lab:
        result = lab.enroll()              # a CompletedProcess; words(result) on one line
        lab.update(copy_source(workdir / "next", source=lab.source))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from provisioning.build import source_files
from session_server.clock import FixedClock
from session_server.settings import ServerSettings
from tests.conftest import ADMIN_TOKEN, RunningServer, serving
from tests.vm import GUEST_SERVICE_PORTS, DebianVm

REPO = Path(__file__).resolve().parent.parent
TWM_PROVISION = REPO / ".venv" / "bin" / "twm-provision"
GUEST_PORT = GUEST_SERVICE_PORTS[-1]
RUN_LIMIT = 3600.0  # seconds for one command: a bound for a hung run, far above what is seen
# The box reaches the host's server at this name (tests/vm.py expose()): plain ws:// on a test
# network, which the box's settings allow only when told so. No GPIO in a VM: mock pins. The sound
# card is left at "default", as a technician with one speakerphone leaves it: the service has no
# PipeWire session, so the box finds the emulated card (hw:0,0) itself (device/audio/cards.py).
BOX_SETTINGS = (
    "allow_insecure=true",
    "pins.factory=mock",
)


@dataclass
class Lab:
    """A VM, the server it enrolls with, and how the technician's tool reaches both."""

    vm: DebianVm
    server: RunningServer
    guest_server: str  # ws://twm-host:8003/ws
    care_home: int
    workdir: Path
    known_hosts: Path
    source: Path  # a copy of this checkout's release files, frozen for the test
    echo: Callable[[str], None] | None = None  # shown each line the tool prints, as it prints it

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TWM_PROVISION_ADMIN_TOKEN": ADMIN_TOKEN,
            "TWM_PROVISION_CACHE": str(Path.home() / ".cache" / "twm-provision"),
            "COLUMNS": "200",
        }

    def ssh_options(self, port: int | None = None) -> list[str]:
        return [
            "--port",
            str(port or self.vm.port),
            "--user",
            self.vm.user,
            "--identity",
            str(self.vm.private_key),
            "--known-hosts",
            str(self.known_hosts),
        ]

    def provision(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(TWM_PROVISION), *args]
        if self.echo is None:
            result = subprocess.run(
                command, capture_output=True, text=True, env=self.env(), timeout=RUN_LIMIT
            )
        else:
            result = self._streamed(command, self.echo)
        # Whatever happened, no secret may be in what the technician sees.
        assert ADMIN_TOKEN not in result.stdout + result.stderr
        for token in self.device_tokens():
            assert token not in result.stdout + result.stderr
        return result

    def _streamed(
        self, command: list[str], echo: Callable[[str], None]
    ) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run``, each line handed to ``echo`` as it comes (stderr merged)."""
        lines = []
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env()
        ) as process:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                echo(line.rstrip("\n"))
            code = process.wait(timeout=RUN_LIMIT)
        return subprocess.CompletedProcess(command, code, "".join(lines), "")

    def enroll(self, *extra: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
        return self.provision(*self.enroll_args(*extra, port=port))

    def enroll_args(self, *extra: str, port: int | None = None) -> list[str]:
        """``twm-provision``'s arguments for this lab's enroll (``port``: SSH through another)."""
        settings = [arg for setting in BOX_SETTINGS for arg in ("--set", setting)]
        return [
            "enroll",
            self.vm.host,
            "--care-home",
            str(self.care_home),
            "--server",
            self.server.url,
            "--box-server-url",
            self.guest_server,
            *settings,
            *self.ssh_options(port),
            "--yes",
            "--online-timeout",
            "600",
            "--source",
            str(self.source),
            *extra,
        ]

    def update(self, source: Path, watch_seconds: int = 20) -> subprocess.CompletedProcess[str]:
        return self.provision(
            "update",
            self.vm.host,
            *self.ssh_options(),
            "--source",
            str(source),
            "--watch-seconds",
            str(watch_seconds),
        )

    def devices(self) -> list[dict[str, object]]:
        response = httpx.get(f"{self.server.url}/api/devices", headers=self.server.admin_headers)
        devices: list[dict[str, object]] = response.json()
        return devices

    def device_tokens(self) -> list[str]:
        result = self.vm.run("sudo cat /etc/twm/device.token 2>/dev/null || true")
        return [line for line in result.stdout.split() if line]

    def on_box(self, command: str) -> str:
        return self.vm.run(command, check=True).stdout.strip()


def words(result: subprocess.CompletedProcess[str]) -> str:
    """Everything printed, on one line: Rich wraps long lines at the terminal's width."""
    return " ".join((result.stdout + result.stderr).split())


def pin_vm_key(vm: DebianVm, known_hosts: Path, *ports: int) -> None:
    """The guest's host key, read from the image when it was built: pinned, never trusted on
    first use (tests/vm.py)."""
    key = " ".join(vm.host_public_key.split()[:2])
    known_hosts.write_text("".join(f"[{vm.host}]:{port} {key}\n" for port in ports))


@contextlib.contextmanager
def lab_for(vm: DebianVm, workdir: Path) -> Iterator[Lab]:
    settings = ServerSettings(data_dir=workdir / "server", admin_token=ADMIN_TOKEN)
    # The real time: the box aligns its clock to the server's, and its TLS-free test link
    # carries no session, so no schedule depends on it.
    with serving(settings, FixedClock(datetime.now(UTC))) as server:
        port = int(server.url.rsplit(":", 1)[1])
        # Its own forwarded port: tests/test_vm.py points the others elsewhere.
        guest = vm.expose(port, GUEST_PORT)
        home = httpx.post(
            f"{server.url}/api/care-homes",
            json={"name": "Rosewood Care Home"},
            headers=server.admin_headers,
        ).json()
        known_hosts = workdir / "known_hosts"
        pin_vm_key(vm, known_hosts, vm.port)
        source = copy_source(workdir / "source", mark=False)
        yield Lab(vm, server, f"ws://{guest}/ws", home["id"], workdir, known_hosts, source)


def copy_source(
    destination: Path,
    *,
    source: Path = REPO,
    mark: bool = True,
    device_cli_change: tuple[str, str] | None = None,
) -> Path:
    """The release files of ``source`` in ``destination``; ``mark`` changes them so its version
    differs. The tests build from such copies: a checkout others edit meanwhile would change
    the release under a running command (which the tool refuses)."""
    for relative in source_files(source):
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, destination / relative)
    if mark:
        marker = destination / "device" / "__init__.py"
        marker.write_text(marker.read_text() + f"\n# test release {destination.name}\n")
    if device_cli_change is not None:
        cli = destination / "device" / "cli.py"
        old, new = device_cli_change
        text = cli.read_text()
        assert old in text, "device/cli.py changed: update the broken release's recipe"
        cli.write_text(text.replace(old, new, 1))
    return destination


# The broken release: its ``twm-device run`` exits at once, as a release with a fatal bug would.
BROKEN_RUN = (
    '    """Run the box: buttons, lights, sound and the link to the other site."""\n',
    '    """Run the box: buttons, lights, sound and the link to the other site."""\n'
    '    raise SystemExit("this release is broken on purpose (a test)")\n',
)
