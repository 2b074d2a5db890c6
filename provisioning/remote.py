"""A box over SSH: commands (as the login user or as root through ``sudo -n``), files written
atomically, and uploads by SFTP.

    async with await connect(target, ssh) as box:
        result = await box.run(["uname", "-m"])
        await box.write_file("/etc/twm/device.toml", text, mode="0644")

Commands are built from argument lists (``shlex.join``) or fixed scripts with their values passed
as positional parameters, so nothing a technician types is ever read as shell syntax. Secrets
never go into a command line, where ``ps`` on the box would show them: ``write_file`` sends the
content on the command's standard input.

The host key is checked against twm-provision's own pins (:mod:`provisioning.known_hosts`): a
key never seen is accepted only when the technician confirms its fingerprint (or passed
``--accept-new-host-key``); a different key than the pinned one is refused.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncssh

from provisioning.errors import (
    HostKeyChanged,
    HostKeyUnknown,
    RemoteFailed,
    Unreachable,
)
from provisioning.known_hosts import KnownHosts, fingerprint
from provisioning.target import Target

CONNECT_TIMEOUT = 60.0  # seconds: a busy Pi (or an emulated one) can take a while to answer
COMMAND_TIMEOUT = 120.0
RERUN = "run the same command again: it carries on where it stopped"

# Asked on first contact with the fingerprint; True pins the key. None: never (fleet, scripts).
ConfirmNewKey = Callable[[Target, str], bool]


@dataclass(frozen=True)
class SshOptions:
    known_hosts: KnownHosts
    identity: Path | None = None
    accept_new_host_key: bool = False
    confirm_new_key: ConfirmNewKey | None = None
    # False in a dry run: a new key may be accepted for that run, but is not written down.
    pin_new_keys: bool = True
    connect_timeout: float = CONNECT_TIMEOUT


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class _PinningClient(asyncssh.SSHClient):
    """Sees the key the box presents when it is not the pinned one, and decides."""

    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = key
        return self.accept


def _changed(target: Target, pins: KnownHosts, now: str, pinned: Sequence[asyncssh.SSHKey]) -> str:
    was = ", ".join(fingerprint(key) for key in pinned)
    return (
        f"the SSH host key of {target} has CHANGED: it now shows {now}, but {was} is pinned in "
        f"{pins.path}. Refused. If this box was re-imaged or replaced, check the new fingerprint "
        f"on its screen (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run "
        f"'twm-provision forget {target.host} --port {target.port}' and enroll it again. "
        "If nobody changed the box, someone may be intercepting the connection: stop and "
        "tell whoever runs the network."
    )


async def connect(
    target: Target, options: SshOptions, *, trust_once: asyncssh.SSHKey | None = None
) -> Remote:
    """An open connection to ``target`` whose host key is pinned, or a ``ProvisionError``.

    ``trust_once``: a key the technician confirmed in a dry run (trusted, not written down).
    """
    pins = options.known_hosts
    pinned = pins.pinned(target.host, target.port)
    if trust_once is not None:
        pinned.append(trust_once)
    accept = not pinned and options.accept_new_host_key
    client = _PinningClient(accept)
    try:
        connection = await asyncssh.connect(
            target.host,
            target.port,
            username=target.user,
            known_hosts=(list(pinned), [], []),
            client_factory=lambda: client,
            client_keys=[str(options.identity)] if options.identity else (),
            connect_timeout=options.connect_timeout,
            # ~/.ssh/config could point this box at another host or key: ignore it, so what is
            # pinned and what is used are exactly what the technician gave.
            config=None,
        )
    except asyncssh.HostKeyNotVerifiable:
        seen = fingerprint(client.presented) if client.presented else "an unknown key"
        if pinned:
            raise HostKeyChanged(_changed(target, pins, seen, pinned), seen) from None
        confirm = options.confirm_new_key
        if client.presented is not None and confirm is not None and confirm(target, seen):
            if not options.pin_new_keys:
                return await connect(target, options, trust_once=client.presented)
            pins.pin(target.host, target.port, client.presented)
            return await connect(target, options)
        raise HostKeyUnknown(
            f"{target} is not known yet: its SSH host key is {seen}. Compare it with the box's "
            "own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its console), then run "
            "again and confirm, or pass --accept-new-host-key.",
            seen,
        ) from None
    except asyncssh.KeyExchangeFailed as exc:
        if pinned:
            # The box no longer offers any key of the pinned type: as good as a changed key.
            raise HostKeyChanged(
                _changed(target, pins, "no key of the pinned type", pinned), ""
            ) from None
        raise Unreachable(f"cannot agree on encryption with {target}: {exc.reason}") from None
    except asyncssh.PermissionDenied:
        raise Unreachable(
            f"{target} refused our SSH key: put your public key in ~{target.user}/.ssh/"
            "authorized_keys on the box (Raspberry Pi Imager: 'Enable SSH, public key only'), "
            "or pass --identity with the right key"
        ) from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        reason = ""
        if isinstance(exc, asyncssh.Error):
            reason = exc.reason
        elif isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
        raise Unreachable(
            f"cannot reach {target} over SSH ({type(exc).__name__}"
            f"{': ' + str(reason) if reason else ''}): is the box on, on this network, with SSH "
            "enabled? Check the address and port."
        ) from None
    if accept and client.presented is not None and options.pin_new_keys:
        pins.pin(target.host, target.port, client.presented)
    remote = Remote(target, connection)
    await remote.learn_identity()
    return remote


class Remote:
    """One SSH connection to a box."""

    def __init__(self, target: Target, connection: asyncssh.SSHClientConnection) -> None:
        self.target = target
        self._connection = connection
        self.is_root = target.user == "root"

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._connection.close()
        await self._connection.wait_closed()

    async def learn_identity(self) -> None:
        result = await self.run(["id", "-u"])
        self.is_root = result.stdout.strip() == "0"

    def _wrap(self, command: str, root: bool) -> str:
        if root and not self.is_root:
            # -n: never wait for a password prompt nobody can answer.
            return f"sudo -n -- {command}"
        return command

    async def run(
        self,
        argv: Sequence[str],
        *,
        root: bool = False,
        input: str | None = None,
        check: bool = True,
        limit: float | None = COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Runs ``argv`` (quoted for the shell), as root when ``root``; ``limit`` in seconds."""
        return await self._execute(shlex.join(argv), root, input, check, limit)

    async def script(
        self,
        text: str,
        *args: str,
        root: bool = False,
        input: str | None = None,
        check: bool = True,
        limit: float | None = COMMAND_TIMEOUT,
        name: str = "",
    ) -> CommandResult:
        """Runs a fixed ``sh`` script with ``args`` as ``$1``…; ``name`` says what it does."""
        command = shlex.join(["sh", "-c", text, "sh", *args])
        return await self._execute(command, root, input, check, limit, name=name)

    async def _execute(
        self,
        command: str,
        root: bool,
        input: str | None,
        check: bool,
        limit: float | None,
        name: str = "",
    ) -> CommandResult:
        full = self._wrap(command, root)
        shown = name or command
        try:
            completed = await self._connection.run(
                full, input=input, check=False, timeout=limit, errors="replace"
            )
        except asyncssh.TimeoutError:
            raise RemoteFailed(
                f"on {self.target}: '{shown}' did not finish within {limit or 0:.0f} s; {RERUN}"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise Unreachable(
                f"the connection to {self.target} dropped ({type(exc).__name__}); {RERUN}"
            ) from None
        status = completed.exit_status if completed.exit_status is not None else -1
        result = CommandResult(
            command=shown,
            exit_status=status,
            stdout=str(completed.stdout or ""),
            stderr=str(completed.stderr or ""),
        )
        if check and not result.ok:
            raise RemoteFailed(self.describe_failure(result))
        return result

    def describe_failure(self, result: CommandResult) -> str:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        if "a password is required" in result.stderr or "a terminal is required" in result.stderr:
            return (
                f"on {self.target}: {self.target.user} needs sudo without a password (Raspberry "
                "Pi OS's first user has it; otherwise add a NOPASSWD line in /etc/sudoers.d)"
            )
        return f"on {self.target}: '{result.command}' failed (exit {result.exit_status}): {tail}"

    async def exists(self, path: str, *, root: bool = False) -> bool:
        result = await self.run(["test", "-e", path], root=root, check=False)
        return result.ok

    async def read_text(self, path: str, *, root: bool = False) -> str | None:
        """The file's text, or None when it does not exist."""
        result = await self.script(
            'if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi',
            path,
            root=root,
            check=False,
            name=f"read {path}",
        )
        if result.exit_status == 3:
            return None
        if not result.ok:
            raise RemoteFailed(self.describe_failure(result))
        return result.stdout

    async def write_file(
        self, path: str, content: str, *, mode: str = "0644", owner: str = "root:root"
    ) -> None:
        """Replaces ``path`` as root, atomically: a sibling temporary file, synced, renamed.

        The content travels on standard input, so a secret never shows in a command line.
        """
        await self.script(
            _WRITE_FILE,
            path,
            mode,
            owner,
            root=True,
            input=content,
            name=f"write {path}",
        )

    async def upload(
        self, files: Sequence[tuple[Path, str]], on_file: Callable[[str], None] | None = None
    ) -> None:
        """Copies each ``(local, remote_path)`` by SFTP, in one session. Each goes to a ``.part``
        name first and is renamed when whole, so a file under its final name is always whole."""
        try:
            async with self._connection.start_sftp_client() as sftp:
                for local, remote_path in files:
                    if on_file is not None:
                        on_file(local.name)
                    partial = f"{remote_path}.part"
                    await sftp.put(str(local), partial)
                    await sftp.posix_rename(partial, remote_path)
        except asyncssh.SFTPError as exc:
            if not isinstance(exc, asyncssh.SFTPConnectionLost):
                raise RemoteFailed(f"on {self.target}: an upload failed: {exc.reason}") from None
            raise Unreachable(
                f"the connection to {self.target} dropped during an upload; {RERUN}"
            ) from None
        except (OSError, asyncssh.Error) as exc:
            raise Unreachable(
                f"the connection to {self.target} dropped during an upload "
                f"({type(exc).__name__}); {RERUN}"
            ) from None


# $1 path, $2 mode, $3 owner:group; the content on stdin.
_WRITE_FILE = """set -eu
dir=$(dirname -- "$1")
tmp="$dir/.$(basename -- "$1").twm-new"
mkdir -p -- "$dir"
umask 077
cat > "$tmp"
chown -- "$3" "$tmp"
chmod -- "$2" "$tmp"
sync -- "$tmp"
mv -f -- "$tmp" "$1"
sync -- "$dir"
"""
