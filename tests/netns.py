"""Test hosts in network namespaces: a box behind its own link that a test can cut.

    with namespace() as ns:           # ns.ns_ip reaches this machine at ns.host_ip
        run(ns.exec("twm-device", "run"))
        ns.cut(); ...; ns.restore()   # the link goes down and comes back, as a care home's does

Addresses are in a /30 of 10.231.0.0/16 chosen per namespace; nothing outside the namespaces this
test made is ever addressed. Needs root (CI runs as root) and iproute2.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

BOOTSTRAP_HINT = "run scripts/bootstrap as root (it installs iproute2)"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Namespace:
    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def exec(self, *command: str) -> list[str]:
        """A command line that runs ``command`` inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def cut(self) -> None:
        """Take the link down, as when a care home's router drops."""
        _ip("link", "set", self.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_if, "up")


@contextmanager
def namespace() -> Iterator[Namespace]:
    if shutil.which("ip") is None:
        pytest.fail(f"the ip command is missing: {BOOTSTRAP_HINT}")
    tag = secrets.token_hex(3)
    subnet = int(tag, 16) % 16000
    third, fourth = divmod(subnet * 4, 256)
    ns = Namespace(
        name=f"twm-{tag}",
        host_if=f"twmh{tag}",
        ns_if=f"twmn{tag}",
        host_ip=f"10.231.{third}.{fourth + 1}",
        ns_ip=f"10.231.{third}.{fourth + 2}",
    )
    _ip("netns", "add", ns.name)
    try:
        _ip("-n", ns.name, "link", "set", "lo", "up")
        _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
        _ip("link", "set", ns.ns_if, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        _ip("-n", ns.name, "addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if)
        _ip("link", "set", ns.host_if, "up")
        _ip("-n", ns.name, "link", "set", ns.ns_if, "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)
