"""A real Debian bookworm with systemd as PID 1, booted with qemu, reached over SSH as ``pi``.

The target for the provisioning tests: ``enable --now``, the watchdog and rollbacks are real there.
The image comes from ``scripts/vm_image.py`` (built once, cached); see docs/testing-vm.md.

    from tests.vm import DebianVm, debian_vm_fixture  # noqa: F401  (provides ``debian_vm``)

    def test_ssh_runs(debian_vm: DebianVm) -> None:
        assert debian_vm.run("systemctl is-active ssh", check=True).stdout.strip() == "active"

Fixture: ``debian_vm``, one VM for the whole session (tests share it: a module that changes it
says so, as tests/test_provision_vm.py does). ``boot_vm(vm_image.ensure_image(), workdir)`` boots
another, from the clean image (20-60 s), powered off on exit.

The guest has no network of its own (qemu ``restrict=on``). It reaches a server a test runs on the
host only through ``vm.expose(host_port)``, which returns the address to use inside the guest
(``twm-host:8000``); every other destination, the host's own addresses included, is unreachable.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_image_builder() -> ModuleType:
    # scripts/ is not a package; load the builder by path under a name no installed package has.
    name = "twm_vm_image"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "vm_image.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


vm_image = _load_image_builder()
VmImage = vm_image.VmImage
VmImageError = vm_image.VmImageError

GUEST_SSH_PORT = 22
# Ports on the guest's host alias (twm-host = 10.0.2.100) that vm.expose() can point at host ports.
GUEST_SERVICE_PORTS = (8000, 8001, 8002, 8003)
BOOT_SECONDS = 600.0  # a bound, not an expectation: 20-60 s here, minutes on a busy machine
POWEROFF_SECONDS = 60.0
# Paths go into qemu's option syntax, where a comma separates options.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@=-]+$")

__all__ = [
    "GUEST_SERVICE_PORTS",
    "DebianVm",
    "VmCommandFailed",
    "VmError",
    "boot_vm",
    "debian_vm_fixture",
]


class VmError(RuntimeError):
    """The VM could not be started or reached; the message carries the end of its serial log."""


class VmCommandFailed(AssertionError):
    """A command run with ``check=True`` exited non-zero; the message has its output."""


class DebianVm:
    """One running qemu guest. ``run()`` executes a shell command as ``pi`` over SSH.

    For other SSH clients (asyncssh, the provisioning tool): ``host``, ``port``, ``user``,
    ``private_key`` and ``known_hosts`` (an OpenSSH known_hosts file naming ``[host]:port`` with
    the guest's host key, read from the image when it was built: pin it, never trust on first use).
    """

    def __init__(self, image: VmImage, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = 0
        self.user: str = image.user
        self.private_key: Path = image.private_key
        self.host_public_key: str = image.host_public_key
        self.known_hosts = workdir / "known_hosts"
        self.serial_log = workdir / "serial.log"
        self.qemu_log = workdir / "qemu.log"
        self.boot_seconds = 0.0  # start to first successful ssh, for the record (never asserted)
        self._process: subprocess.Popen[bytes] | None = None
        # A short private directory: a control socket path must fit in 108 bytes.
        self._control_dir = Path(tempfile.mkdtemp(prefix="twm-vm-"))
        self._control_path = self._control_dir / "cm"

    # --- what tests use ----------------------------------------------------------------------

    @property
    def host_key_fingerprint(self) -> str:
        """``SHA256:…`` as ``ssh-keygen -l`` and asyncssh print it."""
        blob = base64.b64decode(self.host_public_key.split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def run(
        self,
        command: str,
        *,
        check: bool = False,
        timeout: float = 120.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs ``command`` through the guest's shell as ``pi`` (use ``sudo`` for root).

        Exit status 255 means ssh itself failed (the guest went away)."""
        result = subprocess.run(
            self.ssh_command(command),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise VmCommandFailed(
                f"`{command}` exited {result.returncode} on the VM\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def ssh_command(self, command: str | None = None) -> list[str]:
        """The ssh command line for this VM (with ``command``, or without: an interactive login)."""
        argv = [
            "ssh",
            *self._ssh_options(),
            "-o",
            "ControlMaster=no",
            "-o",
            f"ControlPath={self._control_path}",
            f"{self.user}@{self.host}",
        ]
        return [*argv, "--", command] if command is not None else argv

    def expose(self, host_port: int, guest_port: int = GUEST_SERVICE_PORTS[0]) -> str:
        """Lets the guest reach ``127.0.0.1:host_port`` at the returned ``twm-host:guest_port``.

        Takes effect for the guest's next connection; call again to point it elsewhere."""
        if guest_port not in GUEST_SERVICE_PORTS:
            raise ValueError(f"guest port {guest_port} is not forwarded; use {GUEST_SERVICE_PORTS}")
        target = self._forward_file(guest_port)
        target.with_suffix(".tmp").write_text(f"{int(host_port)}\n")
        target.with_suffix(".tmp").replace(target)
        return f"{vm_image.HOST_ALIAS}:{guest_port}"

    def reboot(self) -> None:
        """``systemctl reboot`` and wait for SSH again. The disk keeps its changes (they live in
        qemu's snapshot until the VM is powered off); processes and /run do not."""
        before = self.boot_id()
        self._stop_master()
        self.run("sudo systemctl reboot", timeout=30)
        deadline = time.monotonic() + BOOT_SECONDS
        while True:
            self._wait_for_ssh(deadline)
            if self.boot_id() != before:
                break
            time.sleep(1)
        self._start_master()

    def reconnect(self) -> None:
        """Drops the shared SSH connection and logs in anew: after something other than
        ``reboot()`` restarted the guest or its sshd, the old connection would only hang."""
        self._stop_master()
        self._wait_for_ssh(time.monotonic() + BOOT_SECONDS)
        self._start_master()

    def boot_id(self) -> str:
        return self.run("cat /proc/sys/kernel/random/boot_id", check=True).stdout.strip()

    def serial_tail(self, lines: int = 40) -> str:
        """The end of the guest's console (kernel and systemd messages, login prompt)."""
        if not self.serial_log.exists():
            return "(no serial output)"
        text = self.serial_log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Boots the guest and returns once ``ssh … true`` succeeds."""
        for needed in ("qemu-system-x86_64", "socat", "ssh", "setpriv"):
            if shutil.which(needed) is None:
                raise VmError(
                    f"{needed} not found: run scripts/bootstrap as root "
                    "(qemu-system-x86, socat, openssh-client, util-linux)"
                )
        for path in (self.workdir, self.image.directory):
            if not _SAFE_PATH.match(str(path)):
                raise VmError(f"{path}: qemu's option syntax needs a path without , or spaces")
        began = time.monotonic()
        for attempt in range(3):
            self.port = _free_port()
            self.known_hosts.write_text(f"[{self.host}]:{self.port} {self.host_public_key}\n")
            self._launch()
            time.sleep(0.5)
            if self.running:
                break
            # Most likely another process took the port between our probe and qemu's bind.
            if attempt == 2:
                raise VmError(f"qemu did not start:\n{self.qemu_log.read_text(errors='replace')}")
        self._wait_for_ssh(time.monotonic() + BOOT_SECONDS)
        self.boot_seconds = time.monotonic() - began
        self._start_master()

    def power_off(self) -> None:
        """A clean ``poweroff`` (qemu exits when the guest halts); kills qemu if that hangs."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("sudo systemctl poweroff", timeout=30)
            try:
                process.wait(timeout=POWEROFF_SECONDS)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._stop_master()
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def _launch(self) -> None:
        image = self.image
        netdev = [
            "user",
            "id=n0",
            "restrict=on",  # no guest packet leaves qemu, except through the rules below
            "ipv6=off",
            f"hostfwd=tcp:{self.host}:{self.port}-:{GUEST_SSH_PORT}",
        ]
        for guest_port in GUEST_SERVICE_PORTS:
            # qemu runs the command for each connection the guest opens to twm-host:guest_port, its
            # stdin/stdout being that connection; socat carries it to the host port expose() wrote.
            # The file is read per connection, so a test can expose a server started after boot.
            # Its stderr would go to the guest too: errors go to relay.log instead.
            relay = (
                f"exec 2>>{self.workdir / 'relay.log'}; "
                f"exec socat - TCP:127.0.0.1:$(cat {self._forward_file(guest_port)})"
            )
            netdev.append(
                f"guestfwd=tcp:{vm_image.HOST_ALIAS_ADDRESS}:{guest_port}-cmd:sh -c '{relay}'"
            )
        command = [
            "setpriv",
            "--pdeathsig",
            "SIGTERM",  # qemu goes when the test process goes, however it ends
            "--",
            "qemu-system-x86_64",
            "-name",
            f"twm-vm-{self.port}",
            "-accel",
            "tcg,thread=multi",  # /dev/kvm here is paravirtual and kills a stock kernel
            "-cpu",
            "max",
            "-m",
            "1024",
            "-smp",
            "2",
            "-machine",
            "q35",
            "-nodefaults",
            "-display",
            "none",
            "-kernel",
            str(image.kernel),
            "-initrd",
            str(image.initrd),
            "-append",
            "root=/dev/vda rw console=ttyS0 quiet mitigations=off",
            "-drive",
            # snapshot=on: writes go to a throwaway overlay, the cached image stays clean.
            f"file={image.rootfs},format=raw,if=virtio,cache=unsafe,snapshot=on",
            "-netdev",
            ",".join(netdev),
            "-device",
            "virtio-net-pci,netdev=n0",
            # A Pi has a sound card, and a box without one only shows its fault: qemu's Intel HDA is
            # a real ALSA card to the guest (hw:0,0) whose sound goes nowhere and whose
            # microphone hears silence.
            "-audiodev",
            "none,id=snd0",
            "-device",
            "ich9-intel-hda",
            "-device",
            "hda-duplex,audiodev=snd0",
            "-serial",
            f"file:{self.serial_log}",
            "-monitor",
            "none",
        ]
        with self.qemu_log.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait_for_ssh(self, deadline: float) -> None:
        # slirp accepts TCP on the forwarded port before the guest listens: only a login counts.
        while True:
            if not self.running:
                raise VmError(
                    f"qemu exited while booting:\n{self.qemu_log.read_text(errors='replace')}\n"
                    f"serial console:\n{self.serial_tail()}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                probe = subprocess.run(
                    ["ssh", *self._ssh_options(), f"{self.user}@{self.host}", "true"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise VmError(
                    f"no SSH login within {BOOT_SECONDS:g} s; serial console:\n{self.serial_tail()}"
                )
            time.sleep(1)

    def _start_master(self) -> None:
        # One SSH connection that later commands ride on: a new login costs 2-4 s under emulation.
        # -f puts it in the background once logged in; its output goes nowhere, or a caller
        # capturing ours would wait for it to exit.
        subprocess.run(
            [
                "ssh",
                *self._ssh_options(),
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=yes",
                "-o",
                f"ControlPath={self._control_path}",
                "-f",
                "-N",
                f"{self.user}@{self.host}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    def _stop_master(self) -> None:
        if self._control_path.exists():
            subprocess.run(
                [
                    "ssh",
                    "-o",
                    f"ControlPath={self._control_path}",
                    "-O",
                    "exit",
                    f"{self.user}@{self.host}",
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )

    def _ssh_options(self) -> list[str]:
        options = {
            "IdentitiesOnly": "yes",
            "IdentityFile": str(self.private_key),
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "ConnectTimeout": "10",
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "6",
            "LogLevel": "ERROR",
        }
        argv = ["-F", "/dev/null", "-p", str(self.port)]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        return argv

    def _forward_file(self, guest_port: int) -> Path:
        return self.workdir / f"forward-{guest_port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def boot_vm(image: VmImage, workdir: Path) -> Iterator[DebianVm]:
    """A VM booted from the clean image, powered off on exit. ``workdir`` keeps its serial log."""
    workdir.mkdir(parents=True, exist_ok=True)
    vm = DebianVm(image, workdir)
    try:
        vm.start()
        yield vm
    finally:
        vm.power_off()


def _image_or_fail() -> VmImage:
    try:
        return vm_image.ensure_image()
    except VmImageError as exc:
        pytest.fail(f"the Debian VM image: {exc}")


class _Shared:
    """One VM for the whole session, however many test modules import the fixture."""

    lock = threading.Lock()
    instance: DebianVm | None = None
    stack: contextlib.ExitStack | None = None
    users = 0


@pytest.fixture(scope="session", name="debian_vm")
def debian_vm_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianVm]:
    with _Shared.lock:
        if _Shared.instance is None:
            image = _image_or_fail()
            stack = contextlib.ExitStack()
            try:
                _Shared.instance = stack.enter_context(
                    boot_vm(image, tmp_path_factory.mktemp("debian-vm"))
                )
            except VmError as exc:
                stack.close()
                pytest.fail(str(exc))
            _Shared.stack = stack
        _Shared.users += 1
        running = _Shared.instance
    try:
        yield running
    finally:
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0 and _Shared.stack is not None:
                _Shared.instance = None
                _Shared.stack.close()
                _Shared.stack = None
