"""A whole box as its own process (``twm-device run --config CFG``), as systemd runs it on a Pi,
optionally inside a network namespace: its buttons on a pseudo-terminal (``keyboard = true``
drives the mock pins from keys), its state read from the status file it writes, as
``twm-device status`` reads it.

    config = write_config(tmp / "home", server_ws=..., token=..., audio=card.settings,
                          host_addresses=[ns.ns_ip], allow_insecure=True)
    with box_process(config, prefix=ns.exec()) as box:   # always killed on the way out
        await box.until_state(State.SESSION_SOON)
        box.press("s")                                    # START, as the key in the demo
        box.state                                         # from runtime_dir/status.json

The box's output (structured log lines) is read on a thread and kept with the moment each line
arrived, for the benchmark's timings and for the failure message of a test.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device import status as status_file
from device.audio.virtual import ALSA_CONF, PipeWire
from device.lifecycle.states import State
from device.settings import AudioSettings, MidiSettings
from session_server.protocol import PartyKind

REPO = Path(__file__).resolve().parent.parent
TWM_DEVICE = Path(sys.executable).parent / "twm-device"
HOLD_SECONDS = 0.3
STOP_SECONDS = 15.0
WAIT_SECONDS = 30.0  # a failsafe for a box that never gets there; never a measurement


def write_config(
    home: Path,
    *,
    server_ws: str,
    token: str,
    role: PartyKind = PartyKind.CARE_HOME,
    audio: AudioSettings,
    host_addresses: Sequence[str],
    allow_insecure: bool = False,
    keyboard: bool = False,
    midi: MidiSettings | None = None,
) -> Path:
    """A box's settings file and token file in ``home``, as a technician's tool writes them."""
    home.mkdir(parents=True, exist_ok=True)
    token_file = home / "device.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    addresses = ", ".join(f'"{address}"' for address in host_addresses)
    config = home / "device.toml"
    config.write_text(
        f'server_url = "{server_ws}"\n'
        f"allow_insecure = {str(allow_insecure).lower()}\n"
        f'role = "{role.value}"\n'
        f'token_file = "{token_file}"\n'
        f'runtime_dir = "{home / "run"}"\n'
        f"keyboard = {str(keyboard).lower()}\n"
        "[audio]\n"
        f'input = "{audio.input}"\n'
        f'output = "{audio.output}"\n'
        "[pins]\n"
        'factory = "mock"\n'
        f"hold_seconds = {HOLD_SECONDS}\n"
        "[link]\n"
        f"host_addresses = [{addresses}]\n" + (_midi_section(midi) if midi is not None else ""),
        encoding="utf-8",
    )
    return config


def _midi_section(midi: MidiSettings) -> str:
    return _toml_table("midi", midi.model_dump(exclude_none=True))


def _toml_table(name: str, values: dict[str, Any]) -> str:
    """A settings section as TOML (JSON's strings, numbers and arrays are TOML's too)."""
    tables = {key: value for key, value in values.items() if isinstance(value, dict)}
    lines = [f"[{name}]"] + [
        f"{key} = {json.dumps(value)}" for key, value in values.items() if key not in tables
    ]
    nested = [_toml_table(f"{name}.{key}", value) for key, value in tables.items()]
    return "\n".join(lines) + "\n" + "".join(nested)


@dataclass
class BoxProcess:
    """A running ``twm-device run``; see the module docstring."""

    process: subprocess.Popen[bytes]
    runtime_dir: Path
    keys: int  # the pseudo-terminal's master side: what is written here, the box reads as keys
    lines: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), line)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def status(self) -> status_file.Status | None:
        """What the box last wrote to its status file (every 2 s), or None before it has."""
        return status_file.read(self.runtime_dir)

    @property
    def state(self) -> State | None:
        current = self.status
        return current.state if current is not None else None

    def press(self, keys: str) -> float:
        """Type ``keys`` on the box's terminal ('s' START, 'S' hold START, 'c' clap, 'm' mute);
        returns the moment (``time.monotonic()``) just before they were typed."""
        at = time.monotonic()
        os.write(self.keys, keys.encode())
        return at

    def running(self) -> bool:
        return self.process.poll() is None

    async def until_state(self, *states: State, seconds: float = WAIT_SECONDS) -> State:
        """Poll the status file until it shows one of ``states`` (a bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            state = self.state
            if state in states:
                return state
            if not self.running():
                raise AssertionError(f"the box exited ({self.process.returncode}):\n{self.tail()}")
            if loop.time() > deadline:
                wanted = ", ".join(s.value for s in states)
                raise AssertionError(
                    f"waited {seconds:g} s for the box's status file to say {wanted} "
                    f"(it says {state.value if state else 'nothing'}):\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    def first_line(self, after: float, match: Callable[[str], bool]) -> float | None:
        """When the first output line after ``after`` (monotonic) that ``match`` es arrived."""
        with self._lock:
            start = bisect.bisect_left(self.lines, (after, ""))
            for at, line in self.lines[start:]:
                if match(line):
                    return at
        return None

    def tail(self, count: int = 60) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[-count:])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self._lock:
                self.lines.append((time.monotonic(), line))

    def stop(self) -> None:
        """SIGTERM (the box shuts down cleanly), then SIGKILL if it has not gone in time."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Anything it started in its own process group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


async def technician_status(
    config: Path, prefix: Sequence[str] = (), env: dict[str, str] | None = None
) -> str:
    """What ``twm-device status`` prints for the box (run beside it, as a technician would)."""
    process = await asyncio.create_subprocess_exec(
        *prefix,
        str(TWM_DEVICE),
        "status",
        "--config",
        str(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**(os.environ if env is None else env), "COLUMNS": "200"},  # no wrapped rows
    )
    out, _ = await asyncio.wait_for(process.communicate(), WAIT_SECONDS)
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise AssertionError(f"twm-device status failed ({process.returncode}):\n{text}")
    return text


def state_line(state: State) -> Callable[[str], bool]:
    """Matches the agent's log line for entering ``state``."""
    return lambda line: "event='state'" in line and f"state='{state.value}'" in line


def rig_environment(rig: PipeWire) -> dict[str, str]:
    """The environment in which a box process finds the rig's PipeWire (its runtime directory
    and session bus) and the rig's cards by name (the ALSA files the rig wrote)."""
    alsa = ":".join(str(path) for path in [ALSA_CONF, *rig.alsa_files])
    return {**rig.env, "ALSA_CONFIG_PATH": alsa}


@contextlib.contextmanager
def box_process(
    config: Path,
    *,
    runtime_dir: Path,
    prefix: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[BoxProcess]:
    """Run ``twm-device run --config CONFIG`` (after ``prefix``, e.g. ``ip netns exec NS``) with
    a pseudo-terminal for its keys; it is stopped, and killed if need be, however the block ends.
    ``env``: its environment (default: this process's); ``rig_environment`` gives a rig's."""
    environment = dict(os.environ if env is None else env)
    environment["PYTHONUNBUFFERED"] = "1"  # log lines arrive when they happen
    master, slave = os.openpty()
    try:
        process = subprocess.Popen(
            [*prefix, str(TWM_DEVICE), "run", "--config", str(config)],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=environment,
            start_new_session=True,  # its own process group: stop() ends all of it
        )
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)  # the box holds it now
    box = BoxProcess(process=process, runtime_dir=runtime_dir, keys=master)
    reader = threading.Thread(target=box._read, name="box-output", daemon=True)
    reader.start()
    failed = False
    try:
        yield box
    except BaseException:
        failed = True
        raise
    finally:
        box.stop()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        os.close(master)
        if failed:
            print(f"--- the box's last output (exit {process.returncode}):\n{box.tail()}")
