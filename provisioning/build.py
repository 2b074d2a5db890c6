"""A release, built on the technician's machine: this project's wheel and a wheelhouse of every
dependency for the box's Python and processor, so the box installs offline and fast.

    release = await build_release(Path("."), Platform.of(facts), cache=default_cache())
    release.version      # '0.1.0+3f9c2a1b7d4e': the package version and a hash of the source
    release.files        # the wheel, its dependencies' wheels, and pip's own wheel

The version carries a hash of exactly the files that go into the release, so two different
builds never share a version and the same source always gives the same one (a second enroll
finds the release already installed). Builds are cached under ~/.cache/twm-provision: the
wheelhouse by platform and requirements, the wheel by version.

Wheels come from PyPI as binaries only (``pip download --only-binary=:all:``): a Pi never
compiles anything. A dependency without a wheel for the box's platform is named in the error.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import BuildFailed, UsageError
from provisioning.facts import Facts

CACHE_ENV = "TWM_PROVISION_CACHE"
DEFAULT_CACHE = Path("~/.cache/twm-provision")
PACKAGES = ("device", "session_server", "provisioning")
# Beside the packages: what the wheel needs to build, and what the release carries besides it.
EXTRA_FILES = ("pyproject.toml", "README.md", "systemd/twm-device.service", "docs/device.md")
COMPLETE = ".complete"
_SKIP = re.compile(r"(^|/)(__pycache__|\.mypy_cache|\.ruff_cache)(/|$)|\.py[co]$")


def default_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


@dataclass(frozen=True)
class Platform:
    """What pip needs to choose wheels for a box: its Python, processor and C library."""

    python: str  # "3.11"
    machine: str  # "aarch64"
    libc: tuple[int, int]  # glibc (2, 36)

    @classmethod
    def of(cls, facts: Facts) -> Platform:
        return cls(python=facts.python_tag, machine=facts.machine, libc=facts.libc or (2, 17))

    def tags(self) -> list[str]:
        """Every manylinux tag a box with this glibc runs, newest first.

        pip does not widen ``manylinux_2_36`` to the older tags by itself, so all are given.
        """
        major, minor = self.libc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        tags.append(f"manylinux2014_{self.machine}")
        if self.machine == "x86_64":
            tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
        return tags

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def key(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}-glibc{self.libc[0]}.{self.libc[1]}"


@dataclass(frozen=True)
class Release:
    version: str
    wheel: Path
    wheelhouse: Path
    unit: str  # systemd/twm-device.service, as built
    docs: str  # docs/device.md, as built

    @property
    def files(self) -> list[Path]:
        """Everything uploaded to the box, the project's wheel first."""
        return [self.wheel, *sorted(self.wheelhouse.glob("*.whl"))]

    @property
    def dependencies(self) -> list[str]:
        """The file names of the dependencies' wheels (pip's own among them), sorted."""
        return sorted(path.name for path in self.wheelhouse.glob("*.whl"))

    @property
    def pip_wheel(self) -> Path:
        found = sorted(self.wheelhouse.glob("pip-*.whl"))
        if not found:
            raise BuildFailed(f"the wheelhouse {self.wheelhouse} has no pip wheel: delete it")
        return found[-1]


def source_files(source: Path) -> list[Path]:
    """The files a release is made of, relative to ``source``, in a stable order."""
    files = []
    for package in PACKAGES:
        root = source / package
        if not root.is_dir():
            raise UsageError(
                f"{source} is not a checkout of twm-appliance (no {package}/): pass --source"
            )
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(source)
            if path.is_file() and not _SKIP.search(relative.as_posix()):
                files.append(relative)
    for name in EXTRA_FILES:
        if not (source / name).is_file():
            raise UsageError(f"{source} has no {name}: pass --source with a full checkout")
        files.append(Path(name))
    return files


def content_hash(source: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for relative in files:
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update((source / relative).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def project(source: Path) -> tuple[str, list[str]]:
    """The project's version and its dependencies, from pyproject.toml."""
    data = tomllib.loads((source / "pyproject.toml").read_text(encoding="utf-8"))
    version = str(data["project"]["version"])
    if "+" in version:
        raise UsageError(f"pyproject.toml's version {version} already has a local part (+…)")
    return version, [str(d) for d in data["project"]["dependencies"]]


def release_version(source: Path) -> str:
    version, _ = project(source)
    return f"{version}+{content_hash(source, source_files(source))[:12]}"


async def _pip(*args: str, what: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        tail = "\n".join(output.decode(errors="replace").strip().splitlines()[-8:])
        raise BuildFailed(f"{what} failed:\n{tail}")


def _copy_for_build(source: Path, version: str, files: list[Path], copy: Path) -> None:
    for relative in files:
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, copy / relative)
    pyproject = copy / "pyproject.toml"
    base, _ = project(source)
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(
        text.replace(f'version = "{base}"', f'version = "{version}"', 1), encoding="utf-8"
    )


def _keep(built: Path, target: Path) -> None:
    found = list(built.glob("*.whl"))
    if len(found) != 1 or found[0].name != target.name:
        raise BuildFailed(f"building the wheel gave {[p.name for p in found]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    shutil.copy2(found[0], partial)
    partial.replace(target)


async def _build_wheel(source: Path, version: str, files: list[Path], out: Path) -> Path:
    """Builds from a copy holding exactly ``files``, its version set to ``version``."""
    target = out / f"twm_appliance-{version}-py3-none-any.whl"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(prefix="twm-build-") as work:
        copy = Path(work) / "src"
        await asyncio.to_thread(_copy_for_build, source, version, files, copy)
        built = Path(work) / "wheel"
        await _pip("wheel", "--no-deps", "-q", "-w", str(built), str(copy), what="building")
        _keep(built, target)
    return target


def _fresh(partial: Path) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)


def _complete(partial: Path, house: Path, wanted: list[str]) -> None:
    (partial / COMPLETE).write_text("\n".join(wanted) + "\n", encoding="utf-8")
    shutil.rmtree(house, ignore_errors=True)
    partial.replace(house)


async def _wheelhouse(requirements: list[str], platform: Platform, cache: Path) -> Path:
    wanted = sorted([*requirements, "pip"])
    key = hashlib.sha256("\n".join([platform.key(), *wanted]).encode()).hexdigest()[:16]
    house = cache / "wheelhouse" / f"{platform.key()}-{key}"
    if (house / COMPLETE).exists():
        return house
    partial = house.with_name(house.name + ".partial")
    _fresh(partial)
    args = ["download", "-q", "--only-binary=:all:", "-d", str(partial)]
    args += ["--python-version", platform.python, "--implementation", "cp"]
    for abi in (platform.abi, "abi3", "none"):
        args += ["--abi", abi]
    for tag in platform.tags():
        args += ["--platform", tag]
    await _pip(
        *args,
        *wanted,
        what=(
            f"downloading the dependencies' wheels for Python {platform.python} on "
            f"{platform.machine} (is PyPI reachable from this machine? a package named below "
            "may have no wheel for this processor: use the 64-bit OS on an aarch64 Pi)"
        ),
    )
    _complete(partial, house, wanted)
    return house


async def build_release(
    source: Path, platform: Platform, cache: Path, expected: str | None = None
) -> Release:
    """Builds the release of ``source``; ``expected``: the version the caller planned with."""
    files = await asyncio.to_thread(source_files, source)
    base, requirements = project(source)
    digest = await asyncio.to_thread(content_hash, source, files)
    version = f"{base}+{digest[:12]}"
    if expected is not None and version != expected:
        raise BuildFailed(
            f"the source in {source} changed while this command ran (it was {expected}, it is "
            f"now {version}): run the command again"
        )
    wheel = await _build_wheel(source, version, files, cache / "wheels")
    house = await _wheelhouse(requirements, platform, cache)
    return Release(
        version=version,
        wheel=wheel,
        wheelhouse=house,
        unit=_text(source / "systemd" / "twm-device.service"),
        docs=_text(source / "docs" / "device.md"),
    )


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def default_source() -> Path | None:
    """The checkout this tool runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "device").is_dir() else None
