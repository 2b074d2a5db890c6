"""What boxes print, parsed where it enters: os-release, df, systemctl show, journal JSON, dpkg,
apt-cache, twm-device status; and the verdict on whether a box can be set up."""

from __future__ import annotations

import json

import pytest

from provisioning.check import parse_temperature
from provisioning.device_cli import parse_status
from provisioning.errors import RemoteFailed, TargetUnsuitable
from provisioning.facts import (
    Disk,
    Facts,
    OsRelease,
    ensure_suitable,
    parse_df,
    parse_facts,
    parse_libc,
    parse_os_release,
    parse_python_version,
    problems,
)
from provisioning.journal import parse_journal_json
from provisioning.packages import parse_candidate, parse_dpkg_query
from provisioning.service import parse_systemctl_show

PI_OS_BOOKWORM = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
RASPBIAN_32 = """PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"
ID=raspbian
ID_LIKE=debian
VERSION_ID="12"
VERSION_CODENAME=bookworm
"""
BULLSEYE = 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nID=debian\nVERSION_CODENAME=bullseye\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'
DF = (
    "Filesystem         1-blocks       Used  Available Capacity Mounted on\n"
    "/dev/mmcblk0p2  31068966912 2863325184 26886533120      10% /\n"
)


def facts(**changes: object) -> Facts:
    base = Facts(
        os=parse_os_release(PI_OS_BOOKWORM),
        machine="aarch64",
        python=(3, 11, 2),
        libc=(2, 36),
        root_disk=parse_df(DF)[0],
        hostname="rosewood",
        home="/home/pi",
        model="Raspberry Pi 4 Model B Rev 1.5",
    )
    return base.model_copy(update=changes)


def test_os_release_is_read_with_shell_quoting() -> None:
    os = parse_os_release(PI_OS_BOOKWORM)

    assert os == OsRelease(
        id="debian",
        version_id="12",
        version_codename="bookworm",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
    )
    assert os.debian_family


def test_32_bit_raspbian_counts_as_debian() -> None:
    assert parse_os_release(RASPBIAN_32).debian_family


def test_a_box_without_os_release_is_told_plainly() -> None:
    with pytest.raises(TargetUnsuitable, match="no /etc/os-release"):
        parse_os_release("")


def test_df_gives_bytes_and_the_mount_point_with_spaces() -> None:
    text = DF + "/dev/sda1 1000 10 990 1% /media/pi/USB STICK\n"

    disks = parse_df(text)

    assert disks[0] == Disk(
        filesystem="/dev/mmcblk0p2",
        size=31068966912,
        used=2863325184,
        available=26886533120,
        mount="/",
    )
    assert disks[1].mount == "/media/pi/USB STICK"


def test_df_with_garbage_numbers_is_refused_readably() -> None:
    with pytest.raises(TargetUnsuitable, match="free disk space"):
        parse_df("header\n/dev/x lots some more 10% /\n")


def test_python_and_libc_versions() -> None:
    assert parse_python_version("3.11.2\n") == (3, 11, 2)
    assert parse_python_version("") is None
    assert parse_libc("glibc 2.36\n") == (2, 36)
    assert parse_libc("musl") is None


def test_the_gathering_output_becomes_facts() -> None:
    text = "\n".join(
        [
            "--- twm:os-release",
            PI_OS_BOOKWORM,
            "--- twm:machine",
            "aarch64",
            "--- twm:python",
            "3.11.2",
            "--- twm:libc",
            "glibc 2.36",
            "--- twm:df",
            DF,
            "--- twm:hostname",
            "rosewood",
            "--- twm:home",
            "/home/pi",
            "--- twm:model",
            "Raspberry Pi 5 Model B Rev 1.0",
        ]
    )

    parsed = parse_facts(text)

    assert parsed.machine == "aarch64"
    assert parsed.python_tag == "3.11"
    assert parsed.is_pi
    assert parsed.root_disk.available == 26886533120
    assert "Raspberry Pi 5" in parsed.describe()


def test_an_incomplete_answer_names_what_is_missing() -> None:
    with pytest.raises(TargetUnsuitable, match=r"incomplete.*machine"):
        parse_facts(f"--- twm:os-release\n{PI_OS_BOOKWORM}--- twm:df\n{DF}--- twm:home\n/x\n")


def test_a_pi_with_bookworm_and_room_is_suitable() -> None:
    assert problems(facts()) == []
    ensure_suitable(facts(machine="x86_64", model=""))  # the test VM


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"os": parse_os_release(BULLSEYE)}, "Debian GNU/Linux 11 (bullseye)"),
        ({"os": parse_os_release(UBUNTU)}, "Ubuntu 24.04"),
        ({"machine": "riscv64"}, "processor is riscv64"),
        ({"python": (3, 9, 2)}, "Python 3.9.2; 3.11 or newer"),
        ({"python": None}, "no python3"),
        (
            {"root_disk": Disk(filesystem="/", size=8, used=7, available=300_000_000, mount="/")},
            "0.28 GiB free",
        ),
    ],
)
def test_each_problem_is_said_plainly(change: dict[str, object], words: str) -> None:
    found = problems(facts(**change))

    assert len(found) == 1
    assert words in found[0]
    with pytest.raises(TargetUnsuitable, match="cannot be set up"):
        ensure_suitable(facts(**change))


def test_systemctl_show_is_typed() -> None:
    text = (
        "LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=2\n"
        "UnitFileState=enabled\nMainPID=812\nExecMainStatus=0\nResult=success\n"
        "StatusText=idle: next session at 14:00\nUnrelated=1\n"
    )

    state = parse_systemctl_show(text)

    assert state.healthy and state.enabled and state.installed
    assert state.n_restarts == 2
    assert state.status_text == "idle: next session at 14:00"
    assert state.describe() == "active (running), restarted 2 times"


def test_a_unit_never_started_has_no_numbers() -> None:
    text = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nNRestarts=[not set]\n"

    state = parse_systemctl_show(text)

    assert not state.installed and not state.healthy
    assert state.n_restarts == 0


def test_systemctl_show_without_states_is_an_error() -> None:
    with pytest.raises(RemoteFailed, match="systemctl show"):
        parse_systemctl_show("Failed to connect to bus\n")


def test_journal_json_lines_become_entries_and_junk_is_left_out() -> None:
    lines = [
        json.dumps(
            {
                "__REALTIME_TIMESTAMP": "1764000000000000",
                "PRIORITY": "3",
                "MESSAGE": "no microphone named 'Jabra' — found: USB Audio",
                "SYSLOG_IDENTIFIER": "twm-device",
                "__CURSOR": "s=1;i=2",
            }
        ),
        json.dumps({"__REALTIME_TIMESTAMP": "1764000001000000", "MESSAGE": list(b"bin\xffary")}),
        "-- No entries --",
        json.dumps({"MESSAGE": "no time stamp"}),
        json.dumps({"__REALTIME_TIMESTAMP": "1764000002000000", "MESSAGE": None}),
    ]

    entries = parse_journal_json("\n".join(lines))

    assert [e.message for e in entries] == [
        "no microphone named 'Jabra' — found: USB Audio",
        "bin\ufffdary",
    ]
    assert entries[0].priority == 3
    assert (entries[0].identifier, entries[0].cursor) == ("twm-device", "s=1;i=2")
    assert entries[0].at.year == 2025


def test_dpkg_query_counts_only_fully_installed_packages() -> None:
    text = (
        "libportaudio2\tinstall ok installed\n"
        "pipewire\tdeinstall ok config-files\n"
        "libopus0:arm64\tinstall ok installed\n"
    )

    assert parse_dpkg_query(text) == {"libportaudio2", "libopus0"}


def test_apt_cache_policy_candidate() -> None:
    assert parse_candidate("python3-lgpio:\n  Installed: (none)\n  Candidate: 0.2.2-1\n") == (
        "0.2.2-1"
    )
    assert parse_candidate("python3-lgpio:\n  Installed: (none)\n  Candidate: (none)\n") is None
    assert parse_candidate("") is None


def test_twm_device_status_json_is_typed() -> None:
    text = json.dumps(
        {
            "server": {"reachable": True, "detail": "http://10.0.2.100/healthz: HTTP 200"},
            "cards": [{"name": "Jabra SPEAK 410", "inputs": 1, "outputs": 2}],
            "chosen": {"input": "Jabra SPEAK 410", "output": "Jabra SPEAK 410"},
            "agent": {"running": True, "status": {"state": "idle", "pid": 5}},
        }
    )

    report = parse_status(text)

    assert report.server.reachable
    assert report.cards[0].name == "Jabra SPEAK 410"
    assert report.state == "idle"
    assert report.in_use() == {"input": "Jabra SPEAK 410", "output": "Jabra SPEAK 410"}


def test_the_cards_in_use_are_the_running_boxs_own_word() -> None:
    # A card the box holds open is invisible to a second process on plain ALSA.
    text = json.dumps(
        {
            "server": {"reachable": True},
            "cards": [],
            "chosen": {"input": "none: no microphone named 'hw:0,0'"},
            "agent": {
                "running": True,
                "status": {"state": "idle", "audio": {"input": "HDA (hw:0,0)", "output": "HDA"}},
            },
        }
    )

    assert parse_status(text).in_use() == {"input": "HDA (hw:0,0)", "output": "HDA"}
    with pytest.raises(RemoteFailed, match="not understood"):
        parse_status("Traceback (most recent call last):")


def test_temperature_in_millidegrees() -> None:
    assert parse_temperature("48312\n") == pytest.approx(48.312)
    assert parse_temperature(None) is None
    assert parse_temperature("hot") is None
