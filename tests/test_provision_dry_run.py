"""``twm-provision enroll --dry-run`` against a real sshd (this machine, a Debian bookworm) and a
real server: it reads everything it needs, prints the plan, and touches nothing — not the box,
not the server, not the pinned host keys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, RunningServer
from tests.sshd import LoopbackSshd, sshd_fixture  # noqa: F401 (the fixture, for pytest)

TWM_PROVISION = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "twm-provision"
WATCHED = [
    Path("/etc/twm"),
    Path("/opt/twm"),
    Path("/etc/systemd/system/twm-device.service"),
    Path("/root/.cache/twm-provision/wheels"),
]


def snapshot() -> dict[str, object]:
    """What exists of what an enroll would create, with its contents' times."""
    seen: dict[str, object] = {}
    for path in WATCHED:
        seen[str(path)] = path.stat().st_mtime_ns if path.exists() else None
    users = subprocess.run(["getent", "passwd", "twm-device"], capture_output=True, text=True)
    seen["user twm-device"] = users.stdout
    return seen


def provision(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TWM_PROVISION), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=300,
        check=False,
    )


def test_a_dry_run_prints_the_plan_and_touches_nothing(
    sshd: LoopbackSshd, server: RunningServer, tmp_path: Path
) -> None:
    home = httpx.post(
        f"{server.url}/api/care-homes", json={"name": "Rosewood"}, headers=server.admin_headers
    ).json()
    known_hosts = tmp_path / "known_hosts"
    before = snapshot()

    result = provision(
        "enroll",
        sshd.host,
        "--port",
        str(sshd.port),
        "--user",
        sshd.user,
        "--care-home",
        str(home["id"]),
        "--server",
        server.url,
        "--name",
        "rosewood-1",
        "--set",
        "pins.factory=mock",
        "--identity",
        str(sshd.client_key),
        "--known-hosts",
        str(known_hosts),
        "--accept-new-host-key",
        "--dry-run",
        env={"TWM_PROVISION_ADMIN_TOKEN": ADMIN_TOKEN},
    )

    output = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ box ok not a Pi, Debian GNU/Linux 12 (bookworm), x86_64" in output
    assert (
        f"○ registration would change would register 'rosewood-1' for care home {home['id']}"
        in (output)
    )
    assert "○ release would change would build, upload and install 0.1.0+" in output
    assert "○ service user would change would create the system user twm-device" in output
    assert "○ settings would change would write /etc/twm/device.toml" in output
    assert "○ unit would change would install /etc/systemd/system/twm-device.service" in output
    assert "· audio test skipped not in a dry run" in output
    assert "· online skipped not in a dry run" in output
    assert "✓ dry run: 8 steps would change: registration, packages, service user" in output
    assert ADMIN_TOKEN not in result.stdout + result.stderr
    assert snapshot() == before
    assert not known_hosts.exists()
    devices = httpx.get(f"{server.url}/api/devices", headers=server.admin_headers).json()
    assert devices == []


def test_a_wrong_setting_is_refused_before_anything_is_touched(
    sshd: LoopbackSshd, server: RunningServer, tmp_path: Path
) -> None:
    result = provision(
        "enroll",
        sshd.host,
        "--port",
        str(sshd.port),
        "--care-home",
        "1",
        "--server",
        server.url,
        "--set",
        "audio.inptu=Jabra",
        "--known-hosts",
        str(tmp_path / "known_hosts"),
        "--yes",
        env={"TWM_PROVISION_ADMIN_TOKEN": ADMIN_TOKEN},
    )

    assert result.returncode == 2
    assert "audio.inptu: Extra inputs are not permitted" in " ".join(result.stderr.split())
    assert "sshd: root" not in sshd.log.read_text()  # it never logged in


def test_enroll_without_an_admin_token_says_where_to_put_it(
    sshd: LoopbackSshd, server: RunningServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TWM_PROVISION_ADMIN_TOKEN"}
    result = subprocess.run(
        [
            str(TWM_PROVISION),
            "enroll",
            sshd.host,
            "--port",
            str(sshd.port),
            "--user",
            "root",
            "--school",
            "1",
            "--server",
            server.url,
            "--identity",
            str(sshd.client_key),
            "--known-hosts",
            str(tmp_path / "known_hosts"),
            "--accept-new-host-key",
            "--yes",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )

    assert result.returncode == 2
    assert "TWM_PROVISION_ADMIN_TOKEN" in result.stderr


def test_update_of_a_box_never_enrolled_says_to_enroll_first(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    before = snapshot()

    result = provision(
        "update",
        sshd.host,
        "--port",
        str(sshd.port),
        "--user",
        sshd.user,
        "--identity",
        str(sshd.client_key),
        "--known-hosts",
        str(tmp_path / "known_hosts"),
        "--accept-new-host-key",
        "--dry-run",
        env={},
    )

    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, said
    assert "is not enrolled (it lacks its token, its settings" in said
    assert "run 'twm-provision enroll' first" in said
    assert snapshot() == before


def test_forget_drops_exactly_that_boxs_pinned_key(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known_hosts.write_text(f"[10.0.0.7]:2222 {key}\n10.0.0.7 {key}\n")

    result = provision(
        "forget", "10.0.0.7", "--port", "2222", "--known-hosts", str(known_hosts), env={}
    )

    assert result.returncode == 0, result.stderr
    assert "dropped 1 key(s) of [10.0.0.7]:2222" in " ".join(result.stdout.split())
    assert known_hosts.read_text() == f"10.0.0.7 {key}\n"
