"""The boxes' SSH host keys, pinned in twm-provision's own known-hosts file.

    pins = KnownHosts.default()            # ~/.config/twm-provision/known_hosts
    pins.pinned("10.0.0.7", 22)            # [] the first time
    pins.pin("10.0.0.7", 22, key)          # after the technician compared the fingerprint
    pins.forget("10.0.0.7", 22)            # the box was re-imaged

Its own file, not ``~/.ssh/known_hosts``: a box is trusted because a technician confirmed its
fingerprint for this tool, not because someone once ssh'd to that address. The format is
OpenSSH's (``[host]:port type base64``, one key a line) so ``ssh -o UserKnownHostsFile=…`` can use
it too, but matching is exact on host and port: OpenSSH falls back from ``[host]:port`` to
``host``, which would mix up two boxes behind one address.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from provisioning.errors import UsageError

ENV = "TWM_PROVISION_KNOWN_HOSTS"
DEFAULT_PATH = Path("~/.config/twm-provision/known_hosts")


def pattern(host: str, port: int) -> str:
    """OpenSSH's name for a host: the bare name on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The SHA256 fingerprint as ``ssh-keygen -lf`` and ``ssh`` show it."""
    return key.get_fingerprint("sha256")


def _public_line(key: asyncssh.SSHKey) -> str:
    kind, data = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{kind} {data}"


class KnownHosts:
    """One known-hosts file; every change is written whole to a temporary file and renamed."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()

    @classmethod
    def default(cls, path: Path | None = None) -> KnownHosts:
        """``path``, else ``$TWM_PROVISION_KNOWN_HOSTS``, else ~/.config/twm-provision/."""
        if path is None:
            path = Path(os.environ.get(ENV) or DEFAULT_PATH)
        return cls(path)

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def pinned(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        """The keys pinned for exactly this host and port."""
        wanted = pattern(host, port)
        keys = []
        for number, line in enumerate(self._lines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#") or wanted not in fields[0].split(","):
                continue
            try:
                keys.append(asyncssh.import_public_key(" ".join(fields[1:3])))
            except (asyncssh.KeyImportError, IndexError, ValueError):
                raise UsageError(
                    f"line {number} of {self.path} is not a host key: fix or delete that line"
                ) from None
        return keys

    def pin(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        self._write([*self._lines(), f"{pattern(host, port)} {_public_line(key)}"])

    def forget(self, host: str, port: int) -> int:
        """Drops every key pinned for this host and port; returns how many there were."""
        wanted = pattern(host, port)
        lines = self._lines()
        kept = [line for line in lines if wanted not in (line.split() or [""])[0].split(",")]
        dropped = len(lines) - len(kept)
        if dropped:
            self._write(kept)
        return dropped

    def _write(self, lines: list[str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(f"{line}\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
