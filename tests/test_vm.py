"""The Debian VM the provisioning tests run against is what they need: systemd as PID 1, the
box's Debian packages already installed, a pinned host key, and a network that reaches the test's
own server on the host and nothing else. See tests/vm.py. (The watchdog restart and a reboot are
tested on the enrolled box itself, in tests/test_provision_vm.py, which shares this VM.)"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.vm import (
    DebianVm,
    debian_vm_fixture,  # noqa: F401
    vm_image,
)

# Minutes of waiting on an emulated machine (about one host core): scripts/test runs the VM's
# tests beside the rest of the suite (pytest -m vm).
pytestmark = pytest.mark.vm


# Tries each address from inside the guest and reports what happened, as JSON.
REACH_SCRIPT = """\
import json, socket, sys

results = {}
for host, port in json.loads(sys.argv[1]):
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.settimeout(5)
            results[f"{host}:{port}"] = "reached: " + conn.recv(100).decode(errors="replace")
    except OSError as exc:
        results[f"{host}:{port}"] = f"failed: {exc}"
print(json.dumps(results))
"""


def test_systemd_is_pid_1_and_the_system_comes_up_running(debian_vm: DebianVm) -> None:
    assert debian_vm.run("cat /proc/1/comm", check=True).stdout.strip() == "systemd"

    state = debian_vm.run("systemctl is-system-running --wait", timeout=300).stdout.strip()

    failed = debian_vm.run("systemctl --failed --plain --no-legend").stdout
    assert state == "running", f"system is {state!r}; failed units:\n{failed}"


def test_the_guest_presents_the_host_key_recorded_when_the_image_was_built(
    debian_vm: DebianVm,
) -> None:
    scan = subprocess.run(
        ["ssh-keyscan", "-T", "30", "-t", "ed25519", "-p", str(debian_vm.port), debian_vm.host],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    offered = [" ".join(line.split()[1:3]) for line in scan.stdout.splitlines() if line]
    assert offered == [debian_vm.host_public_key]
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(debian_vm.known_hosts)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert debian_vm.host_key_fingerprint in fingerprint


def test_the_box_packages_are_installed_so_installing_them_offline_changes_nothing(
    debian_vm: DebianVm,
) -> None:
    packages = " ".join(vm_image.BOX_PACKAGES)
    status = debian_vm.run(f"dpkg-query -W -f '${{Package}} ${{Status}}\\n' {packages}").stdout
    installed = {
        line.split()[0] for line in status.splitlines() if line.endswith("install ok installed")
    }
    assert installed == set(vm_image.BOX_PACKAGES), status

    # What twm-provision will do; the guest has no network, so any download would fail.
    install = debian_vm.run(
        f"sudo apt-get install -y --no-install-recommends {packages}",
        timeout=300,
    )

    assert install.returncode == 0, install.stdout + install.stderr
    assert "0 newly installed" in install.stdout, install.stdout


def test_the_guest_reaches_an_exposed_host_server_and_nothing_else(debian_vm: DebianVm) -> None:
    with greeting_server(b"twm-host here\n") as (port, connections):
        address = debian_vm.expose(port)
        host, guest_port = address.split(":")
        targets = [
            (host, int(guest_port)),  # the exposed server, by name (/etc/hosts)
            ("10.0.2.2", port),  # slirp's alias for the host's loopback: closed by restrict=on
            (host, int(guest_port) + 1),  # a forwarded port not exposed to anything
            ("192.0.2.1", 80),  # anywhere else (TEST-NET-1: routed nowhere even if it leaked)
        ]

        result = debian_vm.run(
            f"python3 - '{json.dumps(targets)}'", input=REACH_SCRIPT, check=True
        ).stdout

        outcome = json.loads(result)
        assert outcome[address] == "reached: twm-host here\n"
        assert outcome[f"10.0.2.2:{port}"].startswith("failed"), outcome
        assert outcome["192.0.2.1:80"].startswith("failed"), outcome
        # A forwarded port nothing is exposed on: qemu accepts, the relay finds no port and closes.
        assert outcome[f"{host}:{int(guest_port) + 1}"] == "reached: ", outcome
        assert len(connections) == 1, "only the exposed address may reach the host server"


@contextmanager
def greeting_server(greeting: bytes) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """A TCP server on host loopback that greets each client; yields its port and the peers."""
    connections: list[tuple[str, int]] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            connections.append(peer)
            with conn:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], connections
    finally:
        stop.set()
        thread.join()
        listener.close()
