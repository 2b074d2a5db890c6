"""The software on a box: releases side by side under ``/opt/twm/releases/<version>``, and the
``/opt/twm/current`` link the service runs from.

    /opt/twm/releases/0.1.0+3f9c2a1b7d4e/venv/          the release's own Python environment
    /opt/twm/releases/0.1.0+3f9c2a1b7d4e/twm-device.service   its systemd unit
    /opt/twm/releases/0.1.0+3f9c2a1b7d4e/dependencies.txt     the dependency wheels it has
    /opt/twm/releases/0.1.0+3f9c2a1b7d4e/.complete      written last: the release is whole
    /opt/twm/current -> releases/0.1.0+3f9c2a1b7d4e
    /opt/twm/tools/pip-26.3-py3-none-any/               pip, unpacked and compiled once

A release directory without ``.complete`` is a leftover of an interrupted install and is built
again from scratch. Wheels are uploaded once into the login user's ``~/.cache/twm-provision/
wheels`` (the dependencies rarely change between releases, so an update uploads only the
project's own wheel) and installed offline with pip run from its own wheel: the venv is made
``--without-pip``, which takes well under a second where ``ensurepip`` takes half a minute on a
slow box. The venv sees the system's packages (``--system-site-packages``) for python3-lgpio.

An update starts from the running release: its packages, hard-linked into the new venv, and when
the dependency wheels are the same (``dependencies.txt``), pip installs only this project's wheel
without resolving anything.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning.build import COMPLETE, Platform, Release, build_release
from provisioning.errors import RemoteFailed
from provisioning.facts import Facts
from provisioning.plan import State
from provisioning.remote import Remote

ROOT = "/opt/twm"
RELEASES = f"{ROOT}/releases"
CURRENT = f"{ROOT}/current"
PREVIOUS = f"{ROOT}/previous"  # the release before the last update: where a rollback goes
STAGE = ".cache/twm-provision/wheels"  # under the login user's home
DEPENDENCIES = "dependencies.txt"  # in a release: the dependency wheels it was built from
INSTALL_LIMIT = 3600.0  # seconds: pip compiling ~50 packages on an SD card, or under emulation
_VERSION = re.compile(r"^[0-9A-Za-z.+_-]{1,80}$")


def release_dir(version: str) -> str:
    if not _VERSION.match(version):
        raise RemoteFailed(f"{version!r} is not a release version")
    return f"{RELEASES}/{version}"


async def linked_release(box: Remote, link: str) -> str | None:
    """The version the link ``link`` points at, or None when there is no such link."""
    result = await box.run(["readlink", link], check=False)
    target = result.stdout.strip()
    if not result.ok or not target:
        return None
    return posixpath.basename(target.rstrip("/"))


async def current_release(box: Remote) -> str | None:
    """The version ``current`` points at, or None before the first install."""
    return await linked_release(box, CURRENT)


async def point(box: Remote, link: str, version: str) -> None:
    """Points ``link`` at ``version`` in one rename: nobody ever sees a half-made link."""
    # Never at a release that is not whole: the service would not start from it.
    await box.script(
        f'test -e "$1/{COMPLETE}" && ln -sfn -- "$1" "$2.new" && mv -T -- "$2.new" "$2" && sync',
        release_dir(version),
        link,
        root=True,
        name=f"point {link} at {version} (a whole release)",
    )


async def complete_releases(box: Remote) -> list[str]:
    """The releases that are whole, oldest first (by the time their marker was written)."""
    result = await box.script(
        f'cd "$1" 2>/dev/null || exit 0; ls -1tr -- */{COMPLETE} 2>/dev/null || true',
        RELEASES,
        name="list the installed releases",
    )
    return [line.split("/")[0] for line in result.stdout.splitlines() if "/" in line]


async def is_complete(box: Remote, version: str) -> bool:
    return await box.exists(f"{release_dir(version)}/{COMPLETE}")


async def release_state(box: Remote, version: str) -> State:
    """The "release" step's check, for enroll and update alike."""
    if await is_complete(box, version):
        return State(True, f"{version} installed")
    return State(False, f"would build, upload and install {version}")


async def running_base(box: Remote) -> str | None:
    """The whole release ``current`` points at: what a new release is installed on top of."""
    current = await current_release(box)
    if current is None or not await is_complete(box, current):
        return None
    return current


@dataclass(frozen=True)
class Installed:
    stage: str  # the box's upload cache
    how: str  # "in full", "on top of V …"
    uploaded: int  # files uploaded this time


async def build_and_install(
    box: Remote, facts: Facts, source: Path, cache: Path, version: str
) -> Installed:
    """The "release" step: built here, uploaded, installed on top of the running release."""
    release = await build_release(source, Platform.of(facts), cache, version)
    uploaded: list[str] = []
    stage = await upload(box, release, facts.home, uploaded.append)
    how = await install(box, release, stage, await running_base(box))
    return Installed(stage, how, len(uploaded))


async def upload(box: Remote, release: Release, home: str, on_file: Callable[[str], None]) -> str:
    """Uploads the wheels the box's cache lacks; returns that cache's path."""
    stage = f"{home.rstrip('/')}/{STAGE}"
    listing = await box.script(
        'mkdir -p -- "$1" && chmod 700 -- "$1" && ls -1 -- "$1"', stage, name=f"list {stage}"
    )
    present = set(listing.stdout.split())
    missing = [(path, f"{stage}/{path.name}") for path in release.files if path.name not in present]
    await box.upload(missing, on_file)
    return stage


# One install at a time: after a dropped connection the first run's pip may still be working
# (a command without a terminal does not die with its SSH session); the rerun waits for it, then
# starts the release again from scratch, since it has no marker.
_INSTALL = """set -eu
umask 022
rel="$1"; stage="$2"; wheel="$3"; pip_wheel="$4"; base="$5"; same_dependencies="$6"
mkdir -p -- "$(dirname -- "$rel")"
exec 9> "$(dirname -- "$rel")/.install.lock"
flock 9
rm -rf -- "$rel"
mkdir -p -- "$rel"
python3 -m venv --without-pip --system-site-packages "$rel/venv"
site() { "$1/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
# pip itself, unpacked and byte-compiled once per pip version beside the releases: run straight
# from its wheel, Python compiles pip's few hundred modules again at every start (a minute under
# emulation, seconds on a Pi).
pip_dir="$(dirname -- "$(dirname -- "$rel")")/tools/${pip_wheel%.whl}"
if [ ! -e "$pip_dir/.complete" ]; then
    rm -rf -- "$pip_dir"
    mkdir -p -- "$pip_dir"
    python3 -m zipfile -e "$stage/$pip_wheel" "$pip_dir"
    python3 -m compileall -q -j 0 "$pip_dir" > /dev/null
    touch "$pip_dir/.complete"
fi
pip() {
    PIP_NO_CACHE_DIR=1 PYTHONPATH="$pip_dir" "$rel/venv/bin/python" -m pip install -q --no-index \
        --find-links "$stage" --no-warn-script-location --disable-pip-version-check "$@"
}
if [ -n "$base" ] && [ -e "$base/.complete" ]; then
    # From the running release's packages (compiled already, their times kept so the .pyc files
    # stay valid): pip then replaces only this project and whatever dependency changed. Hard
    # links, not copies: hundreds of MB that would otherwise be written again on an SD card.
    # Safe because nothing writes into a release in place: pip removes a file and writes a new
    # one, and the service runs with the release read-only.
    cp -al -- "$(site "$base")/." "$(site "$rel")/"
    if [ "$same_dependencies" = yes ]; then
        # The very dependency wheels the base has installed: only this project changes, and
        # pip need not resolve anything (which takes it minutes on a slow box).
        pip --no-deps "$stage/$wheel"
    else
        pip "$stage/$wheel"
    fi
else
    pip --no-compile --ignore-installed "$stage/$wheel"
    # Byte-compiled on every core at once (pip compiles on one): the service cannot write .pyc
    # files into its read-only release, and would otherwise compile at every start.
    "$rel/venv/bin/python" -m compileall -q -j 0 "$(site "$rel")" > /dev/null
fi
"""


async def install(box: Remote, release: Release, stage: str, base: str | None = None) -> str:
    """Builds ``/opt/twm/releases/<version>`` from the uploaded wheels; the marker goes last.

    ``base``: a whole release to start from (the running one): its packages are copied and only
    what differs is installed, a fraction of a full install on a slow box. Returns how it went.
    """
    directory = release_dir(release.version)
    from_dir = release_dir(base) if base is not None and base != release.version else ""
    dependencies = "".join(f"{name}\n" for name in release.dependencies)
    same = bool(from_dir) and await box.read_text(f"{from_dir}/{DEPENDENCIES}") == dependencies
    await box.script(
        _INSTALL,
        directory,
        stage,
        release.wheel.name,
        release.pip_wheel.name,
        from_dir,
        "yes" if same else "",
        root=True,
        limit=INSTALL_LIMIT,
        name=f"install release {release.version} (venv and pip, offline)",
    )
    await box.write_file(f"{directory}/twm-device.service", release.unit)
    await box.write_file(f"{directory}/docs/device.md", release.docs)
    await box.write_file(f"{directory}/{DEPENDENCIES}", dependencies)
    await box.run(["sync"], root=True)
    await box.write_file(f"{directory}/{COMPLETE}", release.version + "\n")
    if not from_dir:
        return "in full"
    return f"on top of {base}" + (" (only this project changed)" if same else "")


async def switch(box: Remote, version: str) -> None:
    """Points ``current`` at ``version``; the service runs from it at its next start."""
    await point(box, CURRENT, version)


async def release_unit(box: Remote, version: str) -> str | None:
    return await box.read_text(f"{release_dir(version)}/twm-device.service")


async def prune(box: Remote, keep: list[str], stage: str | None) -> list[str]:
    """Removes every release but ``keep``, and their project wheels from the upload cache."""
    removed = [v for v in await complete_releases(box) if v not in keep]
    for version in removed:
        await box.run(["rm", "-rf", "--", release_dir(version)], root=True)
        if stage is not None:
            await box.run(["rm", "-f", "--", f"{stage}/twm_appliance-{version}-py3-none-any.whl"])
    return removed
