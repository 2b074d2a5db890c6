"""A real OpenSSH server on a free loopback port, for provisioning tests that need SSH but not a
whole box (host-key pinning, reading facts, ``--dry-run``).

    from tests.sshd import LoopbackSshd, sshd_fixture  # the fixture, for pytest to find

    def test_x(sshd: LoopbackSshd) -> None:
        sshd.port, sshd.user, sshd.client_key    # connect as root with this key
        sshd.replace_host_key()                   # same port, new key: a re-imaged box (or worse)

It is this machine's own ``/usr/sbin/sshd`` (LAB.md "A Pi over SSH") with a config of its own:
its own host key, authorized keys file and pid file in the test's directory, listening on
127.0.0.1 only, keys only. It logs in as root, which needs no user created on this machine; the
``sudo`` path is exercised against the test VM (tests/vm.py), where the user is ``pi``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "twm-test", "-f", str(path)],
        check=True,
    )


@dataclass
class LoopbackSshd:
    directory: Path
    port: int = field(default_factory=_free_port)
    user: str = "root"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def client_key(self) -> Path:
        return self.directory / "client_ed25519"

    @property
    def host_key(self) -> Path:
        return self.directory / "host_ed25519"

    @property
    def host_public_key(self) -> str:
        return Path(f"{self.host_key}.pub").read_text().strip()

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def _config(self) -> Path:
        config = self.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UseDNS no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        return config

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.client_key.exists():
            _keygen(self.client_key)
            shutil.copy(f"{self.client_key}.pub", self.directory / "authorized_keys")
        if not self.host_key.exists():
            _keygen(self.host_key)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        config = self._config()
        subprocess.run([str(SSHD), "-t", "-f", str(config)], check=True)
        # -D: stays in the foreground, so this fixture owns exactly the process it started.
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd did not listen on port {self.port}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None

    def replace_host_key(self) -> None:
        """Same address and port, a new host key: what a re-imaged (or impostor) box shows."""
        self.stop()
        _keygen(self.host_key)
        self.start()


@pytest.fixture(name="sshd")
def sshd_fixture(tmp_path: Path) -> Iterator[LoopbackSshd]:
    if os.geteuid() != 0:
        raise RuntimeError("the loopback sshd logs in as root: run the tests as root (as CI does)")
    server = LoopbackSshd(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()
