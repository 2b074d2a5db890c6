"""The Debian packages a box needs, and which of them it has.

missing = await missing_packages(box, await wanted_packages(box))
# apt-get install only these (an offline box that has them all is fine)
"""

from __future__ import annotations

import re

from provisioning.remote import Remote

# By what needs them.
REQUIRED = (
    "libportaudio2",  # sounddevice: the sound card
    "pipewire",  # the audio server; its echo-cancel module ships in the pipewire package
    "pipewire-alsa",
    "pipewire-pulse",
    "wireplumber",
    "libopus0",  # the music-grade Opus path (ctypes)
    "jackd2",  # MIDI ports
    "fluidsynth",  # a General MIDI synthesiser for instruments sent across the link
    "fluid-soundfont-gm",
    "python3-venv",  # the release's venv
)
# Raspberry Pi OS has it (gpiozero's lgpio pin factory); plain Debian bookworm does not.
OPTIONAL = ("python3-lgpio",)
# User units these packages enable for every login session. fluidsynth's loads its soundfont (about
# 180 MB) in each login, the technician's SSH included; the box runs its own synthesiser.
USER_UNITS_OFF = ("fluidsynth.service",)
INSTALLED = "install ok installed"


def parse_dpkg_query(text: str) -> set[str]:
    """``dpkg-query -W -f='${Package}\\t${Status}\\n'``: the packages fully installed."""
    installed = set()
    for line in text.splitlines():
        name, _, status = line.partition("\t")
        if status.strip() == INSTALLED:
            installed.add(name.strip().split(":")[0])  # drop an architecture qualifier
    return installed


def parse_candidate(text: str) -> str | None:
    """``apt-cache policy NAME``: the version apt would install, or None."""
    match = re.search(r"^\s*Candidate:\s*(\S+)", text, re.MULTILINE)
    if match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


async def installed_packages(box: Remote, names: tuple[str, ...]) -> set[str]:
    # dpkg-query exits 1 when one of the names is unknown to dpkg; the others still print.
    result = await box.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *names], check=False)
    return parse_dpkg_query(result.stdout)


async def available(box: Remote, name: str) -> bool:
    result = await box.run(["apt-cache", "policy", name], check=False)
    return parse_candidate(result.stdout) is not None


async def wanted_packages(box: Remote) -> tuple[str, ...]:
    """``REQUIRED``, plus each optional package that is installed or installable here."""
    have = await installed_packages(box, OPTIONAL)
    extra = [name for name in OPTIONAL if name in have or await available(box, name)]
    return REQUIRED + tuple(extra)


async def missing_packages(box: Remote, names: tuple[str, ...]) -> list[str]:
    have = await installed_packages(box, names)
    return [name for name in names if name not in have]


_INSTALL = """set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -q -o DPkg::Lock::Timeout=300 update
apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "$@"
"""


async def user_units_on(box: Remote) -> list[str]:
    """Those of ``USER_UNITS_OFF`` enabled for every user (``systemctl --global``)."""
    on = []
    for unit in USER_UNITS_OFF:
        result = await box.run(["systemctl", "--global", "is-enabled", unit], check=False)
        if result.stdout.strip() in ("enabled", "enabled-runtime"):
            on.append(unit)
    return on


async def turn_off_user_units(box: Remote, units: list[str]) -> None:
    await box.run(["systemctl", "--global", "disable", *units], root=True)


async def install(box: Remote, names: list[str]) -> None:
    await box.script(
        _INSTALL,
        *names,
        root=True,
        limit=1800,
        name=f"apt-get install {' '.join(names)} (needs the box online)",
    )
