"""A private JACK server (dummy driver: no sound hardware) as a pytest fixture, for real MIDI ports
through mido's rtmidi JACK backend (LAB.md: there is no ALSA sequencer here).

    from tests.jack import jack_fixture  # noqa: F401  (provides ``jack``)

    def test_…(jack: Jack) -> None:
        keys = jack.backend.open_output("Keys", virtual=True, client_name="keys")  # an instrument

One server for the whole session, under its own name (``JACK_DEFAULT_SERVER``), so it never meets
another JACK on the machine; ``JACK_NO_START_SERVER`` stops a client from starting a default
server by itself when this one is not up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mido
import pytest
import rtmidi  # type: ignore[import-untyped]

from device.midi.input_port import InputPort

START_SECONDS = 10.0  # a failsafe for a server that never comes up; never a measurement


@dataclass
class Jack:
    name: str
    process: subprocess.Popen[bytes]
    backend: Any  # mido's rtmidi backend on the JACK API

    def listen(self, name: str, callback: Callable[[mido.Message], None]) -> Listener:
        """A virtual input port (a test's synth) whose messages go to ``callback`` on a
        thread of the test's own: see ``Listener``."""
        return Listener(name, callback)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Listener(InputPort):
    """A virtual JACK input (a test's synth), polled like a box's JACK inputs (see
    ``device.midi.input_port``): a callback would run on JACK's process thread and wait there
    for the GIL, which a test process (a server, an event loop, other threads) can hold past
    JACK's cycles; JACK2 then hands the late reader the writer's next, cleared buffer (a
    note-off heard three times, the two messages behind it lost). Polled this often, a stamp
    the callback takes is at most ``POLL_SECONDS`` late."""

    POLL_SECONDS = 0.0005

    def __init__(self, name: str, callback: Callable[[mido.Message], None]) -> None:
        super().__init__(
            rtmidi.API_UNIX_JACK, name, callback, virtual=True, poll_seconds=self.POLL_SECONDS
        )


def start_jack() -> tuple[Jack, dict[str, str | None]]:
    """A new server, and the environment as it was before (to put back)."""
    for program in ("jackd", "jack_wait"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing: apt-get install jackd2 (see LAB.md)")
    name = f"twm-test-{uuid.uuid4().hex[:8]}"
    saved = {key: os.environ.get(key) for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    # Real-time (-R; the suite runs as root): JACK's cycles and every client's process thread
    # run above the suite's other work (a VM under emulation among it), so they keep time.
    # (What lost messages under load was a reader waiting for the GIL on JACK's thread:
    # see Listener.)
    process = subprocess.Popen(
        ["jackd", "-n", name, "-R", "-d", "dummy", "-r", "48000", "-p", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    waited = subprocess.run(
        ["jack_wait", "-s", name, "-w", "-t", str(int(START_SECONDS))],
        capture_output=True,
        text=True,
        check=False,
    )
    if process.poll() is not None or waited.returncode != 0:
        process.kill()
        process.wait()
        pytest.fail(f"jackd did not start: {waited.stdout} {waited.stderr}".strip())
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
    return Jack(name, process, backend), saved


class _Shared:
    """One JACK for the whole session, however many test modules import the fixture."""

    lock = threading.Lock()
    instance: Jack | None = None
    saved: dict[str, str | None] = {}  # noqa: RUF012  (one session's environment, put back once)
    users = 0


@pytest.fixture(scope="session", name="jack")
def jack_fixture() -> Iterator[Jack]:
    with _Shared.lock:
        if _Shared.instance is None:
            _Shared.instance, _Shared.saved = start_jack()
        _Shared.users += 1
        running = _Shared.instance
    try:
        yield running
    finally:
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0:
                _Shared.instance = None
                _end_portaudio()
                running.stop()
                for key, value in _Shared.saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


@pytest.fixture(name="virtual_ports")
def virtual_ports_fixture(jack: Jack) -> Iterator[list[Any]]:
    """Instruments and synths a test makes; closed at the end even if the test failed."""
    made: list[Any] = []
    yield made
    for port in made:
        if not port.closed:
            port.close()


def _end_portaudio() -> None:
    """PortAudio (sounddevice), started again while this server ran, joined it as a JACK client;
    with the server gone, PortAudio's own exit handler aborts the whole process (pa_jack.c:
    "Terminate: Assertion `err == 0' failed", exit 134 after every test passed). So it is ended
    first; whatever opens a sound card next starts it again."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        while sd._initialized:
            sd._terminate()
