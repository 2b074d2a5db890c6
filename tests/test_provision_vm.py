"""``twm-provision`` end to end against a real Debian bookworm booted with qemu (tests/vm.py):
systemd as PID 1, SSH as ``pi`` with sudo, a sound card (qemu's Intel HDA), no network but the
session server this test runs on the host, forwarded into the guest as ``twm-host``.

The session's VM (shared with tests/test_vm.py) is taken through a box's life in order: an enroll
from nothing cut mid-upload, run again and stopped with Ctrl-C, and run a third time to the end;
enroll again (nothing changes), check, a changed host key, a fleet update to a healthy release
with one box switched off, an update to a broken release (rolled back), and a hung box restarted
by systemd's watchdog. One VM and one full install keep this to minutes under emulation. The
tool runs as the technician runs it: the ``twm-provision`` command, the admin token in its
environment. Times are shown at the end ([timing]), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from provisioning.build import release_version
from tests.conftest import free_port
from tests.provision_lab import (
    BROKEN_RUN,
    RUN_LIMIT,
    TWM_PROVISION,
    Lab,
    copy_source,
    lab_for,
    pin_vm_key,
    words,
)
from tests.vm import DebianVm
from tests.vm import debian_vm_fixture as debian_vm_fixture

# Minutes of waiting on an emulated machine (about one host core): scripts/test runs the VM's
# tests beside the rest of the suite (pytest -m vm).
pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def lab(debian_vm: DebianVm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lab_for(debian_vm, tmp_path_factory.mktemp("provision-vm")) as running:
        yield running


class UploadProxy:
    """A TCP relay to the VM's SSH port that acts once ``after`` bytes have gone towards the box:
    by default it cuts every connection (a dropped network in the middle of the upload); with
    ``on_reached`` it calls that once instead and carries on relaying."""

    def __init__(
        self, target_port: int, after: int, on_reached: Callable[[], None] | None = None
    ) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.after = after
        self.on_reached = on_reached
        self.sent = 0
        self.reached = threading.Event()
        self.cut = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UploadProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut.is_set():
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            with contextlib.suppress(OSError):
                while not self.cut.is_set():
                    data = await src.read(65536)
                    if not data:
                        break
                    if count:
                        self.sent += len(data)
                        if self.sent >= self.after and not self.reached.is_set():
                            self.reached.set()
                            if self.on_reached is None:
                                self.cut.set()
                                break
                            self.on_reached()
                    dst.write(data)
                    await dst.drain()
            for end in (writer, up_writer):
                # abort(): a reset, as when a cable is pulled, not a polite close.
                transport = end.transport
                if isinstance(transport, asyncio.Transport):
                    transport.abort()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))


# --- one box's life, in order --------------------------------------------------------------


@dataclass
class Box:
    """What the tests learn about the box as they go."""

    version: str = ""  # the release running now
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def box(request: pytest.FixtureRequest) -> Iterator[Box]:
    state = Box()
    yield state
    # The times, for the record (never asserted): shown past pytest's capture of the output.
    plugins = request.config.pluginmanager
    terminal = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line("")
            for what, seconds in state.seconds.items():
                terminal.write_line(f"[timing] {what}: {seconds:.0f} s")


def timed(box: Box, what: str, run: Callable[[], Any]) -> Any:
    began = time.monotonic()
    result = run()
    box.seconds[what] = time.monotonic() - began
    return result


def answers_ctrl_c() -> None:
    """In the tool's process before it starts: Ctrl-C does what it does in a terminal. scripts/test
    runs these tests in the background, and a shell starts background jobs with SIGINT ignored,
    which Python (and so the tool) would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_enroll_from_nothing_cut_mid_upload_then_interrupted_finishes_when_run_again(
    lab: Lab, box: Box
) -> None:
    # As Debian's fluidsynth package leaves it (the image turned it off): on in every login.
    lab.on_box("sudo systemctl --global enable fluidsynth.service 2>&1")
    # 1. The network drops 8 MB into the upload.
    with UploadProxy(lab.vm.port, after=8 * 1024**2) as proxy:
        pin_vm_key(lab.vm, lab.known_hosts, lab.vm.port, proxy.port)
        cut = timed(box, "enroll cut mid-upload", lambda: lab.enroll(port=proxy.port))
        assert proxy.cut.is_set(), words(cut)

    said = words(cut)
    assert cut.returncode == 1, said
    assert "● registration changed registered as device #1 'twm-vm' for care home" in said, said
    assert "● packages changed fluidsynth.service no longer starts in every login" in said, said
    assert lab.on_box("systemctl --global is-enabled fluidsynth.service || true") == "disabled"
    assert "dropped" in said and "run the same command again" in said, said
    # It got as far as the upload: registered, token stored, release not whole.
    assert len(lab.devices()) == 1
    assert lab.on_box("sudo test -s /etc/twm/device.token && echo stored") == "stored"
    assert lab.on_box("ls /opt/twm/releases/*/.complete 2>/dev/null | wc -l") == "0"

    # 2. Run again, and the technician presses Ctrl-C 8 MB further into the upload.
    with UploadProxy(lab.vm.port, after=8 * 1024**2) as proxy:
        pin_vm_key(lab.vm, lab.known_hosts, lab.vm.port, proxy.port)
        command = [str(TWM_PROVISION), *lab.enroll_args(port=proxy.port)]
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lab.env(),
            preexec_fn=answers_ctrl_c,
        ) as tool:
            proxy.on_reached = lambda: tool.send_signal(signal.SIGINT)
            out, err = tool.communicate(timeout=RUN_LIMIT)
    interrupted = subprocess.CompletedProcess(command, tool.returncode, out, err)

    said = words(interrupted)
    assert proxy.reached.is_set(), said
    assert interrupted.returncode == 130, said
    assert "interrupted: run the same command again" in said, said
    assert "Traceback" not in said, said
    assert lab.on_box("ls /opt/twm/releases/*/.complete 2>/dev/null | wc -l") == "0"

    # 3. Run again: it finishes, from what the first two runs left.
    again = timed(box, "enroll run again after the cut and Ctrl-C (the install)", lab.enroll)

    said = words(again)
    version = release_version(lab.source)
    assert again.returncode == 0, said
    assert "✓ registration ok device #1 'twm-vm', the box has its token" in said, said
    assert f"● release changed {version} installed in full" in said, said
    assert "● service changed enabled and started (active (running))" in said, said
    assert "✓ online ok device #1 'twm-vm' online now" in said, said
    # The self-test ran for real on the emulated card, whose microphone hears only silence:
    # reported as something to look at, as it would be on a box whose speaker is unplugged.
    assert "! audio test warning played 440 Hz for 1 s on 'HDA Intel" in said, said
    assert "NOT heard" in said, said
    assert "; look at: audio test" in said, said

    [device] = lab.devices()
    assert device["online"] is True
    assert lab.on_box("systemctl is-active twm-device") == "active"
    assert lab.on_box("systemctl is-enabled twm-device") == "enabled"
    assert lab.on_box("readlink /opt/twm/current") == f"/opt/twm/releases/{version}"
    assert lab.on_box("sudo stat -c '%a %U:%G' /etc/twm/device.token") == "600 root:root"
    assert {"audio", "gpio"} <= set(lab.on_box("id -nG twm-device").split())
    settings = lab.on_box("cat /etc/twm/device.toml")
    assert f'server_url = "{lab.guest_server}"' in settings
    assert 'role = "care_home"' in settings
    # Only what a box runs: the server's and the technician's packages stay off it.
    installed = lab.on_box("ls /opt/twm/current/venv/lib/python3*/site-packages")
    assert "aiortc" in installed
    assert "sqlalchemy" not in installed and "asyncssh" not in installed
    box.version = version


def test_enroll_again_changes_nothing(lab: Lab, box: Box) -> None:
    result = timed(box, "enroll again (nothing to change)", lab.enroll)

    said = words(result)
    assert result.returncode == 0, said
    assert "✓ nothing to change" in said, said
    assert "changed" not in said.replace("nothing to change", "")
    assert len(lab.devices()) == 1  # not registered a second time


def test_check_shows_a_healthy_box_on_one_screen(lab: Lab, box: Box) -> None:
    result = timed(box, "check", lambda: lab.provision("check", lab.vm.host, *lab.ssh_options()))

    said = words(result)
    assert result.returncode == 0, said
    assert "Service active (running)" in said, said
    assert f"Version {box.version}" in said, said
    assert "Server from box reachable" in said, said
    assert "At the server device #1 online" in said, said
    assert "Temperature n/a" in said  # the VM has no thermal zone
    assert "✓ healthy" in said, said


def test_a_changed_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    known_hosts = tmp_path / "known_hosts"
    fake = " ".join(Path(f"{impostor}.pub").read_text().split()[:2])
    known_hosts.write_text(f"[{lab.vm.host}]:{lab.vm.port} {fake}\n")

    result = lab.provision(
        "check",
        lab.vm.host,
        "--port",
        str(lab.vm.port),
        "--identity",
        str(lab.vm.private_key),
        "--known-hosts",
        str(known_hosts),
        "--accept-new-host-key",
    )

    said = words(result)
    assert result.returncode == 1, said
    assert "host key of pi@127.0.0.1" in said and "has CHANGED" in said, said
    assert lab.vm.host_key_fingerprint in said, said
    assert known_hosts.read_text() == f"[{lab.vm.host}]:{lab.vm.port} {fake}\n"


def test_a_fleet_update_updates_every_box_and_one_switched_off_fails_alone(
    lab: Lab, box: Box, tmp_path: Path
) -> None:
    healthy = copy_source(lab.workdir / "healthy", source=lab.source)
    new = release_version(healthy)
    down = free_port()  # nothing listens there: a box that is off
    inventory = tmp_path / "boxes.toml"
    inventory.write_text(
        f"""
server = "{lab.server.url}"
box_server_url = "{lab.guest_server}"

[defaults]
user = "{lab.vm.user}"

[defaults.settings]
allow_insecure = true
pins = {{ factory = "mock" }}

[[box]]
name = "twm-vm"
host = "{lab.vm.host}"
port = {lab.vm.port}
care_home = {lab.care_home}

[[box]]
name = "switched-off"
host = "127.0.0.1"
port = {down}
care_home = {lab.care_home}
"""
    )

    result = timed(
        box,
        "fleet update to a healthy release (watched 10 s), one box down",
        lambda: lab.provision(
            "fleet",
            str(inventory),
            "update",
            "--parallel",
            "2",
            "--watch-seconds",
            "10",
            "--source",
            str(healthy),
            "--identity",
            str(lab.vm.private_key),
            "--known-hosts",
            str(lab.known_hosts),
        ),
    )

    said = words(result)
    assert result.returncode == 1, said
    # Their rows in the summary table.
    assert "│ twm-vm │ ✓ ok │ changed 2 steps: release, switch" in said, said
    assert "│ switched-off │ ✗ failed │" in said, said
    assert f"cannot reach pi@127.0.0.1:{down}" in said, said
    assert "1 of 2 failed: switched-off" in said, said
    # The box that was on has the new release, installed on top of the old, which it keeps.
    assert lab.on_box("readlink /opt/twm/current") == f"/opt/twm/releases/{new}"
    assert lab.on_box("readlink /opt/twm/previous") == f"/opt/twm/releases/{box.version}"
    assert lab.on_box("/opt/twm/current/venv/bin/twm-device version") == new
    assert lab.on_box("systemctl is-active twm-device") == "active"
    assert lab.on_box(f"cat /opt/twm/releases/{new}/dependencies.txt") == lab.on_box(
        f"cat /opt/twm/releases/{box.version}/dependencies.txt"
    )
    box.version = new


def test_update_to_a_broken_release_rolls_back_by_itself(lab: Lab, box: Box) -> None:
    source = copy_source(
        lab.workdir / "broken",
        source=lab.source,
        device_cli_change=BROKEN_RUN,
    )
    broken = release_version(source)

    result = timed(
        box,
        "update to a broken release, rolled back",
        lambda: lab.update(source, watch_seconds=10),
    )

    said = words(result)
    assert result.returncode == 1, said
    assert f"release {broken} did not come up healthy" in said, said
    # What the failed release itself wrote, after the old one's last words as it stopped.
    assert "it said: " in said, said
    assert "this release is broken on purpose (a test)" in said, said
    assert f"rolled back to {box.version}, which is active (running)" in said, said
    assert lab.on_box("readlink /opt/twm/current") == f"/opt/twm/releases/{box.version}"
    assert lab.on_box("systemctl is-active twm-device") == "active"
    assert lab.on_box(f"test -e /opt/twm/releases/{broken}/.complete && echo kept") == "kept"


def restarts(lab: Lab) -> int:
    return int(lab.on_box("systemctl show -p NRestarts --value twm-device"))


def last_seen(lab: Lab) -> datetime:
    [device] = lab.devices()
    return datetime.fromisoformat(str(device["last_seen_at"]))


def wait_until_back_online(lab: Lab, seen_before: datetime, limit: float = 300.0) -> None:
    """Until the box is connected to the server again, by a connection newer than ``seen_before``
    (the server sets ``last_seen_at`` as a box connects)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        [device] = lab.devices()
        if device["online"] is True and last_seen(lab) > seen_before:
            return
        time.sleep(2)
    raise AssertionError(f"the box did not come back online within {limit:g} s: {lab.devices()}")


def test_a_hung_box_is_restarted_by_the_watchdog_and_comes_back_online(lab: Lab, box: Box) -> None:
    before = restarts(lab)
    seen = last_seen(lab)
    main_pid = lab.on_box("systemctl show -p MainPID --value twm-device")

    # Frozen: its event loop no longer runs, so no WATCHDOG=1 reaches systemd.
    lab.on_box(f"sudo kill -STOP {main_pid}")
    began = time.monotonic()
    deadline = began + 180
    while restarts(lab) == before:
        assert time.monotonic() < deadline, lab.on_box("systemctl status twm-device --no-pager")
        time.sleep(2)
    wait_until_back_online(lab, seen)
    box.seconds["frozen box → watchdog restart → online"] = time.monotonic() - began

    journal = lab.on_box("sudo journalctl -u twm-device --no-pager -o cat")
    assert "Watchdog timeout" in journal, journal[-3000:]
    assert lab.on_box("systemctl show -p MainPID --value twm-device") != main_pid
    assert lab.on_box("systemctl is-active twm-device") == "active"
