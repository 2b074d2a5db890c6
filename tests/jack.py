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
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mido
import pytest
import rtmidi  # type: ignore[import-untyped]

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


class Listener:
    """A virtual JACK input read by polling, never with an rtmidi callback.

    python-rtmidi runs an input's callback on JACK's process thread, where it waits for the
    GIL. In a test process (a server, an event loop, other threads) that wait can outlast JACK
    cycles, and JACK2 then hands the late reader the writer's next, cleared buffer: rtmidi reads
    the first event again where the rest were (a note-off heard three times, the two messages
    behind it lost). Polled, rtmidi queues the events on JACK's thread without Python, and this
    thread hands them over; the stamps a callback takes are then at most ``POLL_SECONDS`` late.
    """

    POLL_SECONDS = 0.0005

    def __init__(self, name: str, callback: Callable[[mido.Message], None]) -> None:
        self.name = f"{name}:{name}"  # as JACK lists it: the client's name, then the port's
        self._callback = callback
        self._rt = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=name, queue_size_limit=4096)
        self._rt.open_virtual_port(name)
        self._rt.ignore_types(sysex=True, timing=True, active_sense=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"listen-{name}", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._rt.close_port()
        self._rt.delete()

    def _poll(self) -> None:
        while not self._stop.is_set():
            event = self._rt.get_message()
            if event is None:
                time.sleep(self.POLL_SECONDS)
                continue
            try:
                message = mido.Message.from_bytes(event[0])
            except ValueError:
                continue  # not one whole message: these tests send none
            self._callback(message)


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


def _end_portaudio() -> None:
    """PortAudio (sounddevice), started again while this server ran, joined it as a JACK client;
    with the server gone, PortAudio's own exit handler aborts the whole process (pa_jack.c:
    "Terminate: Assertion `err == 0' failed", exit 134 after every test passed). So it is ended
    first; whatever opens a sound card next starts it again."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        while sd._initialized:
            sd._terminate()
