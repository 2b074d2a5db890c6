"""Host-key pinning and the remote operations against a real OpenSSH server on loopback
(tests/sshd.py): first contact, the same key again, a changed key; files written atomically;
and the facts of a real Debian system read over SSH."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from provisioning.errors import HostKeyChanged, HostKeyUnknown, Unreachable
from provisioning.facts import gather, problems
from provisioning.known_hosts import KnownHosts
from provisioning.remote import SshOptions, connect
from provisioning.target import Target
from tests.sshd import LoopbackSshd, sshd_fixture  # noqa: F401 (the fixture, for pytest)


def keygen_fingerprint(public_key: Path) -> str:
    """What ``ssh-keygen -lf`` says: the technician compares this on the box's console."""
    line = subprocess.run(
        ["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True
    ).stdout
    return line.split()[1]


def target(sshd: LoopbackSshd) -> Target:
    return Target(host=sshd.host, port=sshd.port, user=sshd.user)


def options(sshd: LoopbackSshd, tmp_path: Path, **changes: object) -> SshOptions:
    base = SshOptions(known_hosts=KnownHosts(tmp_path / "known_hosts"), identity=sshd.client_key)
    return SshOptions(**{**base.__dict__, **changes})  # type: ignore[arg-type]


async def test_first_contact_is_refused_showing_the_fingerprint(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    with pytest.raises(HostKeyUnknown) as caught:
        await connect(target(sshd), options(sshd, tmp_path))

    expected = keygen_fingerprint(Path(f"{sshd.host_key}.pub"))
    assert caught.value.fingerprint == expected
    assert expected in str(caught.value)
    assert "--accept-new-host-key" in str(caught.value)
    assert not (tmp_path / "known_hosts").exists()


async def test_a_confirmed_key_is_pinned_and_the_same_key_is_accepted_later(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    asked: list[str] = []

    def confirm(where: Target, fingerprint: str) -> bool:
        asked.append(fingerprint)
        return True

    async with await connect(target(sshd), options(sshd, tmp_path, confirm_new_key=confirm)):
        pass
    async with await connect(target(sshd), options(sshd, tmp_path)) as box:
        result = await box.run(["echo", "hello"])

    assert asked == [keygen_fingerprint(Path(f"{sshd.host_key}.pub"))]
    assert result.stdout == "hello\n"
    pinned = (tmp_path / "known_hosts").read_text().split()
    assert pinned[0] == f"[127.0.0.1]:{sshd.port}"
    assert " ".join(pinned[1:3]) == " ".join(sshd.host_public_key.split()[:2])
    assert (tmp_path / "known_hosts").stat().st_mode & 0o777 == 0o600


async def test_a_declined_key_is_not_pinned(sshd: LoopbackSshd, tmp_path: Path) -> None:
    with pytest.raises(HostKeyUnknown):
        await connect(
            target(sshd), options(sshd, tmp_path, confirm_new_key=lambda where, fp: False)
        )

    assert KnownHosts(tmp_path / "known_hosts").pinned(sshd.host, sshd.port) == []


async def test_a_changed_key_is_refused_with_what_to_do(sshd: LoopbackSshd, tmp_path: Path) -> None:
    async with await connect(target(sshd), options(sshd, tmp_path, accept_new_host_key=True)):
        pass
    pinned_before = (tmp_path / "known_hosts").read_text()

    sshd.replace_host_key()
    with pytest.raises(HostKeyChanged) as caught:
        await connect(target(sshd), options(sshd, tmp_path, accept_new_host_key=True))

    message = str(caught.value)
    assert "CHANGED" in message
    assert keygen_fingerprint(Path(f"{sshd.host_key}.pub")) in message
    assert f"twm-provision forget 127.0.0.1 --port {sshd.port}" in message
    assert (tmp_path / "known_hosts").read_text() == pinned_before

    # After the technician forgets the old key, the new one can be confirmed and pinned.
    assert KnownHosts(tmp_path / "known_hosts").forget(sshd.host, sshd.port) == 1
    async with await connect(target(sshd), options(sshd, tmp_path, accept_new_host_key=True)):
        pass


async def test_a_dry_run_accepts_a_new_key_without_writing_it_down(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    async with await connect(
        target(sshd),
        options(sshd, tmp_path, confirm_new_key=lambda where, fp: True, pin_new_keys=False),
    ) as box:
        assert (await box.run(["true"])).ok

    assert not (tmp_path / "known_hosts").exists()


async def test_pins_are_per_port(sshd: LoopbackSshd, tmp_path: Path) -> None:
    pins = KnownHosts(tmp_path / "known_hosts")
    async with await connect(target(sshd), options(sshd, tmp_path, accept_new_host_key=True)):
        pass

    assert pins.pinned(sshd.host, sshd.port)
    assert pins.pinned(sshd.host, 22) == []
    assert pins.pinned(sshd.host, sshd.port + 1) == []


async def test_a_wrong_client_key_and_a_closed_port_say_what_to_check(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)]
    process = await asyncio.create_subprocess_exec(*keygen)
    assert await process.wait() == 0
    with pytest.raises(Unreachable, match="refused our SSH key"):
        await connect(
            target(sshd),
            options(sshd, tmp_path, identity=stranger, accept_new_host_key=True),
        )

    sshd.stop()
    with pytest.raises(Unreachable, match="is the box on"):
        await connect(target(sshd), options(sshd, tmp_path, accept_new_host_key=True))


async def test_files_are_written_whole_with_their_mode_and_read_back(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    path = tmp_path / "etc" / "device.token"
    async with await connect(
        target(sshd), options(sshd, tmp_path, accept_new_host_key=True)
    ) as box:
        assert await box.read_text(str(path)) is None
        await box.write_file(str(path), "first\n", mode="0600")
        await box.write_file(str(path), "it's a $(secret) `x`\n", mode="0600")
        text = await box.read_text(str(path))
        listing = await box.run(["ls", "-A", str(path.parent)])

    assert text == "it's a $(secret) `x`\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert listing.stdout.split() == ["device.token"]  # no temporary file left beside it


async def test_script_arguments_are_never_shell_syntax(sshd: LoopbackSshd, tmp_path: Path) -> None:
    async with await connect(
        target(sshd), options(sshd, tmp_path, accept_new_host_key=True)
    ) as box:
        result = await box.script('printf "%s|" "$@"', "a b", "$(touch /tmp/x)", "; rm -rf /")

    assert result.stdout == "a b|$(touch /tmp/x)|; rm -rf /|"


async def test_the_facts_of_a_real_debian_are_read_over_ssh(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    async with await connect(
        target(sshd), options(sshd, tmp_path, accept_new_host_key=True)
    ) as box:
        facts = await gather(box)

    assert facts.os.version_codename == "bookworm"
    assert facts.machine == "x86_64"
    assert facts.python is not None and facts.python[:2] >= (3, 11)
    assert facts.libc is not None and facts.libc >= (2, 36)
    assert facts.root_disk.mount == "/"
    assert facts.home == "/root"
    assert not facts.is_pi
    assert problems(facts) == []
