"""Our systemd units are valid and hardened, checked offline with ``systemd-analyze``.

systemd is not PID 1 here, so ``verify`` runs against a throwaway root: a copy of the system's own
units (for the targets ours refer to) and a stub for each ExecStart binary, since verify refuses a
unit whose binary is missing. Unknown keys only warn with exit status 0, so any output fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
MAX_EXPOSURE = 2.5  # issue 5: "an exposure score of 2.5 or lower"
UNIT_FILES = sorted(UNITS.glob("*.service"))
BOOTSTRAP_HINT = "run scripts/bootstrap as root (it installs the systemd package)"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(f"systemd-analyze not found: {BOOTSTRAP_HINT}")
    if not SYSTEM_UNITS.is_dir():
        pytest.fail(f"{SYSTEM_UNITS} is missing: {BOOTSTRAP_HINT}")
    return found


def exec_start_binaries(unit_text: str) -> list[Path]:
    """The absolute paths of the programs a unit runs (prefixes such as ``-`` or ``+`` removed)."""
    binaries = []
    for line in unit_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().startswith("Exec") and value.strip():
            binaries.append(Path(value.split()[0].lstrip("-+!@:")))
    return binaries


def offline_root(tmp_path: Path, unit: Path, text: str | None = None) -> Path:
    """A root directory holding the system's units, stub binaries and ``unit`` (or ``text``)."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    text = unit.read_text() if text is None else text
    for binary in exec_start_binaries(text):
        stub = root / binary.relative_to("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    installed = root / "etc/systemd/system" / unit.name
    installed.parent.mkdir(parents=True, exist_ok=True)
    installed.write_text(text)
    return installed


def verify(analyze: str, root: Path, installed: Path) -> subprocess.CompletedProcess[str]:
    # The unit must lie inside --root: given a path outside it, verify reads nothing from that path.
    return subprocess.run(
        [analyze, "verify", f"--root={root}", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exposure(analyze: str, unit: Path) -> float:
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no exposure level in systemd-analyze output:\n{result.stdout}{result.stderr}"
    return float(match.group(1))


def test_both_units_are_here() -> None:
    assert [unit.name for unit in UNIT_FILES] == ["twm-device.service", "twm-server.service"]


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda unit: unit.name)
def test_unit_passes_systemd_analyze_verify_without_any_message(tmp_path: Path, unit: Path) -> None:
    analyze = systemd_analyze()
    installed = offline_root(tmp_path, unit)

    result = verify(analyze, tmp_path / "root", installed)

    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_harness_reports_a_misspelt_key(tmp_path: Path) -> None:
    """The check above would pass vacuously if verify read some other file: prove it reads ours."""
    analyze = systemd_analyze()
    unit = UNITS / "twm-server.service"
    text = unit.read_text().replace("[Service]\n", "[Service]\nNoNewPrivilege=yes\n", 1)
    installed = offline_root(tmp_path, unit, text)

    result = verify(analyze, tmp_path / "root", installed)

    assert "Unknown key 'NoNewPrivilege'" in result.stdout + result.stderr


def test_server_unit_runs_the_venv_server_as_the_twm_user_with_its_state_directory() -> None:
    text = (UNITS / "twm-server.service").read_text()

    assert "ExecStart=/opt/twm/.venv/bin/twm-server serve " in text
    assert "User=twm\n" in text
    assert "StateDirectory=twm-server\n" in text
    assert "EnvironmentFile=-/etc/twm/server.env\n" in text


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda unit: unit.name)
def test_unit_exposure_is_at_most_two_and_a_half(unit: Path) -> None:
    analyze = systemd_analyze()

    level = exposure(analyze, unit)

    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}: harden the unit"


def test_device_unit_is_a_watched_notify_service_with_its_token_as_a_credential() -> None:
    text = (UNITS / "twm-device.service").read_text()

    assert "Type=notify\n" in text
    assert re.search(r"^WatchdogSec=\d+s$", text, re.MULTILINE)
    assert "Restart=on-failure\n" in text
    assert "StartLimitBurst=" in text
    assert "LoadCredential=device-token:/etc/twm/device.token\n" in text
    assert "User=twm-device\n" in text
    assert (
        "ExecStart=/opt/twm/current/venv/bin/twm-device run --config /etc/twm/device.toml\n" in text
    )
    assert "DevicePolicy=closed\n" in text
    # sounddevice's cffi callbacks need write+execute memory: with this the box cannot start.
    assert "MemoryDenyWriteExecute=yes" not in text
