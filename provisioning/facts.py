"""What a box is: its OS, architecture, Python, C library and free disk, read over SSH in one
command and parsed here into typed facts; and whether this tool can set it up.

    facts = await gather(box)
    problems(facts)        # [] or sentences: "the box runs Debian 11 (bullseye); …"

Everything the box prints is parsed where it enters (``parse_os_release``, ``parse_df`` …): a
box that answers something unexpected gives a readable ``TargetUnsuitable``, never a
``KeyError`` deep inside a later step.
"""

from __future__ import annotations

import re
import shlex

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioning.errors import TargetUnsuitable
from provisioning.remote import Remote

SUPPORTED_CODENAMES = ("bookworm",)
MIN_PYTHON = (3, 11)
# A release (venv) is about 350 MB and its upload about 120 MB; two releases are kept.
MIN_FREE_BYTES = 1024**3
# What a Raspberry Pi 4/5 reports, and x86_64: not a Pi, accepted so the whole tool can be
# exercised against a Debian VM (there is no ARM emulation fast enough for tests here).
PI_MACHINES = ("aarch64", "armv7l")
TEST_MACHINES = ("x86_64",)

_SECTION = "--- twm:"
_GATHER = f"""
echo '{_SECTION}os-release'; cat /etc/os-release 2>/dev/null
echo '{_SECTION}machine'; uname -m
echo '{_SECTION}python'; python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' \
    2>/dev/null
echo '{_SECTION}libc'; getconf GNU_LIBC_VERSION 2>/dev/null
echo '{_SECTION}df'; df -P -B1 / 2>/dev/null
echo '{_SECTION}hostname'; hostname
echo '{_SECTION}home'; printf '%s\\n' "$HOME"
echo '{_SECTION}systemd'; if [ -d /run/systemd/system ]; then echo yes; else echo no; fi
echo '{_SECTION}model'; tr -d '\\000' < /proc/device-tree/model 2>/dev/null; echo
exit 0
"""


class _Parsed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OsRelease(_Parsed):
    """The fields of ``/etc/os-release`` this tool looks at."""

    id: str = Field(min_length=1)
    id_like: str = ""
    version_id: str = ""
    version_codename: str = ""
    pretty_name: str = ""

    def describe(self) -> str:
        return self.pretty_name or f"{self.id} {self.version_id}".strip()

    @property
    def debian_family(self) -> bool:
        return self.id in ("debian", "raspbian") or "debian" in self.id_like.split()


class Disk(_Parsed):
    filesystem: str
    size: int = Field(ge=0)
    used: int = Field(ge=0)
    available: int = Field(ge=0)
    mount: str


class Facts(_Parsed):
    os: OsRelease
    machine: str = Field(min_length=1)
    python: tuple[int, int, int] | None
    libc: tuple[int, int] | None
    root_disk: Disk
    hostname: str = Field(min_length=1)
    home: str = Field(pattern=r"^/")
    model: str = ""
    # systemd is PID 1 (sd_booted(3)'s test). Always so on a Pi; not in a chroot or container.
    systemd: bool = True

    @property
    def python_tag(self) -> str:
        """``3.11`` for pip's ``--python-version``; only meaningful when ``python`` is set."""
        major, minor, _ = self.python or (0, 0, 0)
        return f"{major}.{minor}"

    @property
    def is_pi(self) -> bool:
        return self.machine in PI_MACHINES

    def describe(self) -> str:
        what = self.model or ("a Raspberry Pi" if self.is_pi else "not a Pi")
        python = ".".join(map(str, self.python)) if self.python else "no Python"
        return f"{what}, {self.os.describe()}, {self.machine}, Python {python}"


def parse_os_release(text: str) -> OsRelease:
    """``KEY=value`` lines with shell quoting, as os-release(5) defines them."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip().lower()] = parts[0] if parts else ""
    known = {name: values[name] for name in OsRelease.model_fields if name in values}
    try:
        return OsRelease(**known)
    except ValidationError:
        raise TargetUnsuitable(
            "the box has no /etc/os-release naming its OS: is this Raspberry Pi OS or Debian?"
        ) from None


def parse_df(text: str) -> list[Disk]:
    """``df -P -B1``: a header, then one line per file system (mount points may hold spaces)."""
    disks = []
    for line in text.splitlines()[1:]:
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        try:
            disks.append(
                Disk(
                    filesystem=fields[0],
                    size=int(fields[1]),
                    used=int(fields[2]),
                    available=int(fields[3]),
                    mount=fields[5],
                )
            )
        except (ValueError, ValidationError):
            raise TargetUnsuitable(
                f"cannot read the box's free disk space from: {line!r}"
            ) from None
    return disks


def parse_python_version(text: str) -> tuple[int, int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text.strip())
    if match is None:
        return None
    major, minor, micro = (int(group) for group in match.groups())
    return major, minor, micro


def parse_libc(text: str) -> tuple[int, int] | None:
    """``getconf GNU_LIBC_VERSION``: ``glibc 2.36``."""
    match = re.fullmatch(r"glibc (\d+)\.(\d+)(?:\.\d+)?", text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(_SECTION):
            current = sections.setdefault(line.removeprefix(_SECTION).strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def parse_facts(text: str) -> Facts:
    """The output of the gathering script, as typed facts."""
    sections = split_sections(text)
    disks = parse_df(sections.get("df", ""))
    if not disks:
        raise TargetUnsuitable("the box did not say how much disk space it has (df -P /)")
    try:
        return Facts(
            os=parse_os_release(sections.get("os-release", "")),
            machine=sections.get("machine", "").strip(),
            python=parse_python_version(sections.get("python", "")),
            libc=parse_libc(sections.get("libc", "")),
            root_disk=disks[0],
            hostname=sections.get("hostname", "").strip(),
            home=sections.get("home", "").strip(),
            model=sections.get("model", "").strip(),
            systemd=sections.get("systemd", "").strip() != "no",
        )
    except ValidationError as exc:
        fields = ", ".join(str(error["loc"][0]) for error in exc.errors(include_input=False))
        raise TargetUnsuitable(f"the box's answer about itself was incomplete ({fields})") from None


async def gather(box: Remote) -> Facts:
    result = await box.script(_GATHER, name="read the box's OS, Python and disk")
    return parse_facts(result.stdout)


def problems(facts: Facts) -> list[str]:
    """Everything that stops this tool from setting the box up, each as a sentence."""
    found = []
    os = facts.os
    if not os.debian_family or os.version_codename not in SUPPORTED_CODENAMES:
        found.append(
            f"the box runs {os.describe()}; this tool sets up Raspberry Pi OS or Debian 12 "
            "(bookworm): image the SD card with Raspberry Pi OS Lite (64-bit, bookworm)"
        )
    if facts.machine not in PI_MACHINES + TEST_MACHINES:
        found.append(
            f"the box's processor is {facts.machine}; this tool sets up a Raspberry Pi 4 or 5 "
            "(aarch64) running the 64-bit OS"
        )
    if facts.python is None:
        found.append("the box has no python3: install Raspberry Pi OS Lite, which includes it")
    elif facts.python[:2] < MIN_PYTHON:
        found.append(
            f"the box has Python {'.'.join(map(str, facts.python))}; 3.11 or newer is needed "
            "(Raspberry Pi OS bookworm has 3.11)"
        )
    if facts.libc is None:
        found.append("the box's C library is not glibc: use Raspberry Pi OS or Debian")
    if facts.root_disk.available < MIN_FREE_BYTES:
        found.append(
            f"the box has {facts.root_disk.available / 1024**3:.2f} GiB free on "
            f"{facts.root_disk.mount}; {MIN_FREE_BYTES / 1024**3:.0f} GiB is needed: use a "
            "larger SD card (16 GB or more)"
        )
    return found


def ensure_suitable(facts: Facts) -> None:
    found = problems(facts)
    if found:
        raise TargetUnsuitable("this box cannot be set up: " + "; ".join(found) + ".")
