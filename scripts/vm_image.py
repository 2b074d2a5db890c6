"""Builds, or finds in its cache, the Debian bookworm VM image that the provisioning tests boot.

The image is a real Debian with systemd as PID 1, reached over SSH as ``pi`` with NOPASSWD sudo,
like a freshly imaged Raspberry Pi (but x86_64: qemu emulates a PC here). Everything a box needs
from Debian is installed in advance, because the booted VM has no network of its own: a later
``apt-get install --no-install-recommends`` of those packages inside it changes nothing.

    scripts/vm-image                 # build once (about 3-5 minutes), then reuse (under a second)
    scripts/vm-image --force         # build anew
    scripts/vm-image --cache DIR     # another cache directory (default /var/cache/twm-vm)

From Python (the pytest fixture in ``tests/vm.py`` does this)::

    image = ensure_image()           # VmImage: rootfs, kernel, initrd, pi's key, the host key

The cache is keyed by a hash of the recipe (packages, files written, size, RECIPE_VERSION): a change
to any of them builds a new image. Bump RECIPE_VERSION when changing *how* the image is built. The
recipe is the one proven in shared/LAB.md; docs/testing-vm.md explains it. Standard library only,
so it runs with any python3 >= 3.11 as root.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

RECIPE_VERSION = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path(os.environ.get("TWM_VM_CACHE", "/var/cache/twm-vm"))

USER = "pi"
HOSTNAME = "twm-vm"
# The name and address under which the guest reaches servers a test runs on the host: qemu's
# user network forwards TCP to this address (guestfwd) even with restrict=on (tests/vm.py).
HOST_ALIAS = "twm-host"
HOST_ALIAS_ADDRESS = "10.0.2.100"
# Sparse on disk; what the system does not use is room for releases and venvs under test.
IMAGE_SIZE_BYTES = 4 * 1024**3

# debootstrap --include: systemd as PID 1, SSH, Python, sudo, a kernel. LAB.md's recipe, less
# ifupdown and isc-dhcp-client (systemd-networkd does the DHCP), plus what Raspberry Pi OS Lite
# has and a technician's tool may call (ps, /etc/services).
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "sudo",
    "iproute2",
    "procps",
    "netbase",
    "linux-image-amd64",
)

# What a box needs from Debian (twm-provision installs it), pre-installed: the VM is offline.
# python3-lgpio is not in Debian bookworm (only in Raspberry Pi OS's own archive): left out.
BOX_PACKAGES = (
    "libportaudio2",
    "pipewire",
    "pipewire-bin",
    "wireplumber",
    "pipewire-alsa",
    "pipewire-pulse",
    "pulseaudio-utils",
    "libopus0",
    "python3-venv",
    "python3-pip",
    "jackd2",
    "fluidsynth",
    "fluid-soundfont-gm",
    "alsa-utils",
    "dbus-user-session",
)

# Files written into the root, by path. Part of the cache key.
FILES: dict[str, str] = {
    "etc/hostname": f"{HOSTNAME}\n",
    "etc/hosts": (
        "127.0.0.1\tlocalhost\n"
        f"127.0.1.1\t{HOSTNAME}\n"
        f"{HOST_ALIAS_ADDRESS}\t{HOST_ALIAS}\n"
        "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
    ),
    "etc/fstab": "/dev/vda\t/\text4\terrors=remount-ro,noatime\t0\t1\n",
    "etc/systemd/network/20-wired.network": "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n",
    # Keys only; no reverse lookups (the guest has no DNS, each login would wait for it).
    "etc/ssh/sshd_config.d/twm-vm.conf": (
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin no\n"
        "PubkeyAuthentication yes\n"
        "UseDNS no\n"
    ),
    # The name Raspberry Pi OS gives this file.
    f"etc/sudoers.d/010_{USER}-nopasswd": f"{USER} ALL=(ALL) NOPASSWD: ALL\n",
    # A small initrd: the guest's disk is virtio, its root ext4; nothing else needs loading early.
    "etc/initramfs-tools/conf.d/twm-vm.conf": "MODULES=list\nRESUME=none\n",
    "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\next4\n",
    # apt in the guest parses its lists under emulation: no 32 MB of package descriptions to read.
    "etc/apt/apt.conf.d/99twm-vm": 'Acquire::Languages "none";\n',
}
# No DNS: with restrict=on qemu drops the guest's queries to 10.0.2.3, so each lookup would hang
# for 20 s. Pointing at a resolver that is not there makes lookups fail at once; names the tests
# use come from /etc/hosts.
GUEST_RESOLV_CONF = (
    "# The test VM has no DNS: names resolve from /etc/hosts only.\nnameserver 127.0.0.1\n"
)
USER_GROUPS = ("sudo", "audio", "video", "plugdev", "gpio")  # as on Raspberry Pi OS
ENABLE_UNITS = ("systemd-networkd.service", "ssh.service")
# Nothing may wait for a network that is not there, or start apt behind the tests' backs.
MASK_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "systemd-networkd-wait-online.service",
    # Looks for stale e2scrub snapshots at every boot (10 s of emulated CPU); there are none.
    "e2scrub_reap.service",
    "e2scrub_all.timer",
)
# Debian's fluidsynth enables a user unit that starts in every login session, ssh included: under
# emulation it took ~180 MB of the guest's 1 GB and half a CPU loading the soundfont on each login.
DISABLE_USER_UNITS = ("fluidsynth.service",)

PRUNE_AFTER_SECONDS = 24 * 3600
ROOTFS = "rootfs.ext4"
KERNEL = "vmlinux"
INITRD = "initrd.img"
PRIVATE_KEY = "id_ed25519"
HOST_KEY = "ssh_host_ed25519_key.pub"
MANIFEST = "manifest.json"
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


class VmImageError(RuntimeError):
    """The image cannot be built or read; the message says why and what to do."""


@dataclass(frozen=True)
class VmImage:
    """A built image in the cache, everything qemu and ssh need to boot it and log in."""

    directory: Path
    key: str
    user: str
    host_public_key: str  # "ssh-ed25519 AAAA…": the guest's sshd key, fixed in the image
    kernel_version: str

    @property
    def rootfs(self) -> Path:
        return self.directory / ROOTFS

    @property
    def kernel(self) -> Path:
        return self.directory / KERNEL

    @property
    def initrd(self) -> Path:
        return self.directory / INITRD

    @property
    def private_key(self) -> Path:
        return self.directory / PRIVATE_KEY

    @classmethod
    def load(cls, directory: Path) -> VmImage:
        manifest = json.loads((directory / MANIFEST).read_text())
        return cls(
            directory=directory,
            key=manifest["key"],
            user=manifest["user"],
            host_public_key=manifest["host_public_key"],
            kernel_version=manifest["kernel_version"],
        )


def recipe() -> dict[str, object]:
    """Everything that decides the image's content; its hash names the cached image."""
    return {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "base_packages": BASE_PACKAGES,
        "box_packages": BOX_PACKAGES,
        "files": FILES,
        "resolv_conf": GUEST_RESOLV_CONF,
        "user": USER,
        "user_groups": USER_GROUPS,
        "enable": ENABLE_UNITS,
        "mask": MASK_UNITS,
        "disable_user_units": DISABLE_USER_UNITS,
        "size": IMAGE_SIZE_BYTES,
    }


def image_key() -> str:
    canonical = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


class Progress:
    """Steps with elapsed times on a stream (stderr), so a long build shows where it is."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.start = time.monotonic()

    def say(self, message: str) -> None:
        if self.stream is not None:
            print(
                f"[{time.monotonic() - self.start:6.1f}s] {message}", file=self.stream, flush=True
            )

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"{name} …")
        began = time.monotonic()
        yield
        self.say(f"{name}: done in {time.monotonic() - began:.1f} s")


def ensure_image(
    cache: Path = DEFAULT_CACHE,
    *,
    force: bool = False,
    mirror: str = DEFAULT_MIRROR,
    progress: TextIO | None = sys.stderr,
) -> VmImage:
    """The cached image for the current recipe, built first if it is not there (or ``force``)."""
    report = Progress(progress)
    key = image_key()
    final = cache / "images" / key
    if not force and (final / MANIFEST).is_file():
        report.say(f"image {key} found in {final}")
        _mark_used(final)
        return VmImage.load(final)
    if os.geteuid() != 0:
        raise VmImageError(
            f"building the VM image needs root (debootstrap, chroot); none cached in {cache}: "
            "run `sudo scripts/vm-image` once"
        )
    missing = [tool for tool in ("debootstrap", "mkfs.ext4", "ssh-keygen") if not _which(tool)]
    if missing:
        raise VmImageError(
            f"missing {', '.join(missing)}: run scripts/bootstrap as root (or apt-get install "
            "debootstrap e2fsprogs openssh-client)"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache, report):
        # Another process may have built it while this one waited for the lock.
        if not force and (final / MANIFEST).is_file():
            report.say(f"image {key} found in {final} (built meanwhile)")
            return VmImage.load(final)
        _remove_stale_builds(cache)
        build = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
        try:
            _build(build, key, cache, mirror, report)
            _install(build / "out", final)
        except BaseException:
            log = build / "build.log"
            if log.exists():
                shutil.copy(log, cache / "last-build.log")
                report.say(f"build failed; its log is {cache / 'last-build.log'}")
            raise
        finally:
            _remove_tree(build)
        _prune_other_images(cache, keep=key)
    report.say(f"image {key} ready in {final}")
    return VmImage.load(final)


def _build(build: Path, key: str, cache: Path, mirror: str, report: Progress) -> None:
    root = build / "root"
    out = build / "out"
    out.mkdir()
    log = build / "build.log"
    debootstrap_cache = cache / "debs" / "debootstrap"
    apt_cache = cache / "debs" / "apt"
    debootstrap_cache.mkdir(parents=True, exist_ok=True)
    apt_cache.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str) -> Iterator[None]:
        began = time.monotonic()
        with report.step(name):
            yield
        timings[name] = round(time.monotonic() - began, 1)

    with step("ssh key for the test user"):
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"twm-vm test key {key}",
                "-f",
                str(out / PRIVATE_KEY),
            ],
            log,
        )
    with step(f"debootstrap {SUITE} (minbase + {len(BASE_PACKAGES)} packages)"):
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                f"--cache-dir={debootstrap_cache}",
                SUITE,
                str(root),
                mirror,
            ],
            log,
        )
    with step("configure: files, user, units"):
        _configure(root, (out / f"{PRIVATE_KEY}.pub").read_text(), log)
    with _proc_mounted(root), _services_blocked(root):
        with step(f"apt-get install {len(BOX_PACKAGES)} box packages"):
            _install_box_packages(root, apt_cache, log)
            _chroot(root, ["systemctl", "--global", "disable", *DISABLE_USER_UNITS], log)
        with step("small initrd (virtio, ext4)"):
            _chroot(root, ["update-initramfs", "-u", "-k", "all"], log)
    with step("clean apt, collect kernel and keys"):
        _chroot(root, ["apt-get", "clean"], log)
        # clean also drops apt's binary cache; made here, the guest's first apt call need not
        # rebuild it from the lists (half a minute under emulation).
        _chroot(root, ["apt-cache", "gencaches"], log)
        (root / "etc/resolv.conf").unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text(GUEST_RESOLV_CONF)
        host_key = (root / "etc/ssh" / HOST_KEY).read_text().split()
        host_public_key = " ".join(host_key[:2])
        (out / HOST_KEY).write_text(host_public_key + "\n")
        kernel_version = _copy_kernel(root, out)
        versions = _package_versions(root, log)
    with step(f"ext4 image ({IMAGE_SIZE_BYTES // 1024**3} GiB, sparse)"):
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "twm-root",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                "-d",
                str(root),
                str(out / ROOTFS),
                str(IMAGE_SIZE_BYTES // 1024) + "k",
            ],
            log,
        )
    manifest = {
        "key": key,
        "user": USER,
        "host_public_key": host_public_key,
        "kernel_version": kernel_version,
        "kernel_format": _kernel_format(out / KERNEL),
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": timings,
        "packages": versions,
        "recipe": recipe(),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _configure(root: Path, authorized_key: str, log: Path) -> None:
    for relative, content in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # debootstrap may leave a symlink (resolv.conf, hosts)
        path.write_text(content)
    (root / f"etc/sudoers.d/010_{USER}-nopasswd").chmod(0o440)
    # The build resolves the mirror through the host's resolver; the guest's is written at the end.
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")

    _chroot(root, ["groupadd", "--system", "gpio"], log)
    _chroot(root, ["useradd", "--create-home", "--shell", "/bin/bash", USER], log)
    _chroot(root, ["usermod", "--append", "--groups", ",".join(USER_GROUPS), USER], log)
    # A locked account ("!") is refused even for key logins; "*" has no password but may log in.
    _chroot(root, ["usermod", "--password", "*", USER], log)
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(authorized_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    _chroot(root, ["chown", "-R", f"{USER}:{USER}", f"/home/{USER}/.ssh"], log)

    _chroot(root, ["systemctl", "enable", *ENABLE_UNITS], log)
    _chroot(root, ["systemctl", "mask", *MASK_UNITS], log)
    # The machine-id debootstrap wrote stays: an empty one would run first-boot setup every boot.


def _install_box_packages(root: Path, apt_cache: Path, log: Path) -> None:
    archives = root / "var/cache/apt/archives"
    before = {p.name for p in archives.glob("*.deb")}
    # .debs from earlier builds, hard-linked in (same file system) so a rebuild downloads nothing.
    for deb in apt_cache.glob("*.deb"):
        target = archives / deb.name
        if not target.exists():
            _link_or_copy(deb, target)
    _chroot(root, ["apt-get", "-q", "update"], log)
    _chroot(
        root,
        [
            "apt-get",
            "-q",
            "-y",
            "-o",
            "Dpkg::Use-Pty=0",
            "install",
            "--no-install-recommends",
            *BOX_PACKAGES,
        ],
        log,
    )
    for deb in archives.glob("*.deb"):
        if deb.name not in before and not (apt_cache / deb.name).exists():
            _link_or_copy(deb, apt_cache / deb.name)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy(source, target)


def _copy_kernel(root: Path, out: Path) -> str:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise VmImageError(f"expected one kernel in /boot, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copy(root / "boot" / f"initrd.img-{version}", out / INITRD)
    bzimage = kernels[0].read_bytes()
    vmlinux = extract_vmlinux(bzimage)
    # qemu boots an uncompressed ELF kernel directly (PVH): faster than through the bzImage's
    # own decompressor under emulation. The bzImage still boots if the payload is not xz/lzma.
    (out / KERNEL).write_bytes(vmlinux if vmlinux is not None else bzimage)
    return version


def _kernel_format(kernel: Path) -> str:
    with kernel.open("rb") as f:
        return "vmlinux (PVH)" if f.read(4) == b"\x7fELF" else "bzImage"


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The uncompressed ELF kernel inside a bzImage (Debian's is xz), or None if not found."""
    for magic, container in (
        (b"\xfd7zXZ\x00", lzma.FORMAT_XZ),
        (b"\x5d\x00\x00", lzma.FORMAT_ALONE),
    ):
        start = bzimage.find(magic)
        while start != -1:
            with contextlib.suppress(lzma.LZMAError, EOFError):
                payload = lzma.LZMADecompressor(format=container).decompress(bzimage[start:])
                if payload.startswith(b"\x7fELF"):
                    return payload
            start = bzimage.find(magic, start + 1)
    return None


def _package_versions(root: Path, log: Path) -> dict[str, str]:
    listing = _chroot(
        root,
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *BOX_PACKAGES, *BASE_PACKAGES],
        log,
    )
    return dict(line.split(" ", 1) for line in listing.splitlines() if line)


@contextlib.contextmanager
def _proc_mounted(root: Path) -> Iterator[None]:
    # Some maintainer scripts read /proc. A fresh proc instance, never a bind of the host's /dev or
    # /sys: removing the build tree must never be able to reach host files.
    target = root / "proc"
    _run_quiet(["mount", "-t", "proc", "proc", str(target)])
    try:
        yield
    finally:
        _run_quiet(["umount", "--lazy", str(target)])


@contextlib.contextmanager
def _services_blocked(root: Path) -> Iterator[None]:
    # Debian's convention: policy-rc.d exiting 101 keeps maintainer scripts from starting services.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(cache: Path, report: Progress) -> Iterator[None]:
    with (cache / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.say(f"waiting for another build in {cache} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _install(out: Path, final: Path) -> None:
    # Rename is atomic on one file system: the cache holds a complete image or none.
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = final.with_name(final.name + ".old")
        _remove_tree(old)
        final.rename(old)
        out.rename(final)
        _remove_tree(old)
    else:
        out.rename(final)


def _remove_stale_builds(cache: Path) -> None:
    # We hold the lock, so any build-* directory is left over from an interrupted build.
    for stale in cache.glob("build-*"):
        _remove_tree(stale)


def _mark_used(image: Path) -> None:
    with contextlib.suppress(OSError):  # a reader without write access just does not mark it
        os.utime(image)


def _prune_other_images(cache: Path, keep: str) -> None:
    # Another test run (an older checkout) may still boot an older image: only images nobody has
    # used for a day go.
    cutoff = time.time() - PRUNE_AFTER_SECONDS
    for image in (cache / "images").iterdir():
        if image.name != keep and image.stat().st_mtime < cutoff:
            _remove_tree(image)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for mountpoint in sorted(_mounts_under(path), reverse=True):
        _run_quiet(["umount", "--lazy", mountpoint])
    if _mounts_under(path):
        raise VmImageError(f"{path} still has mounts; unmount them, then remove it by hand")
    shutil.rmtree(path)


def _mounts_under(path: Path) -> list[str]:
    # Never delete through a mount: a leftover mount inside the build tree would take host files.
    top = str(path.resolve())
    mountpoints = (
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    return [m for m in mountpoints if m == top or m.startswith(top + "/")]


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _chroot(root: Path, command: Sequence[str], log: Path) -> str:
    return _run(["chroot", str(root), *command], log, env=CHROOT_ENV)


def _run(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> str:
    """Runs a build command, its output appended to the build log; on failure, says which and shows
    the end of its output."""
    executable = _which(command[0])
    if executable is None:
        raise VmImageError(f"{command[0]} not found")
    with log.open("a") as sink:
        sink.write(f"\n$ {' '.join(command)}\n")
        sink.flush()
        # A session of its own: on an interrupt the whole tree (debootstrap's dpkg, apt's
        # downloads) is stopped before the build directory is removed under it.
        process = subprocess.Popen(  # noqa: S603 (fixed commands, no shell)
            [executable, *command[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env if env is not None else {**os.environ, "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        try:
            output, _ = process.communicate()
        except BaseException:
            _stop_group(process)
            raise
        sink.write(output)
    result = subprocess.CompletedProcess(command, process.returncode, output)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-25:])
        raise VmImageError(f"`{' '.join(command)}` failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def _stop_group(process: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_quiet(command: Sequence[str]) -> None:
    executable = _which(command[0])
    if executable is not None:
        subprocess.run([executable, *command[1:]], check=False, capture_output=True)  # noqa: S603


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vm-image",
        description="Build (or reuse) the cached Debian VM image for the provisioning tests.",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="default: %(default)s")
    parser.add_argument("--force", action="store_true", help="build anew even if cached")
    parser.add_argument(
        "--mirror", default=DEFAULT_MIRROR, help="Debian mirror (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C instead of leaving a half-built tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        print(
            "error: scripts/vm-image must run as root (debootstrap, chroot, mount)", file=sys.stderr
        )
        return 2
    try:
        image = ensure_image(args.cache.resolve(), force=args.force, mirror=args.mirror)
    except VmImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the cache is unchanged (a partial build was removed)", file=sys.stderr)
        return 130
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
