"""Helpers for the tests of ``device.net``: a box's network side with a tone for a microphone,
an event log to wait on, and a session server that can be stopped and started again on the same
port (the ``server`` fixture's cannot)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import inspect
import secrets
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from pydantic import SecretStr

from device.lifecycle.events import Event
from device.net.backoff import Backoff
from device.net.ice import host_addresses
from device.net.link_settings import LinkSettings
from device.net.links import LinkManager
from device.net.signalling import SignallingClient
from session_server.app import create_app
from session_server.clock import FixedClock
from session_server.protocol import PartyKind
from session_server.settings import ServerSettings
from tests.conftest import free_port
from tests.standin_device import ToneTrack

WAIT = 20.0
# The conftest clock's moment: inside the window of the seeded 14:00 session.
NOW = datetime(2026, 11, 24, 13, 50, tzinfo=UTC)
LOOPBACK = LinkSettings(host_addresses=("127.0.0.1",))
E = TypeVar("E")


class EventLog:
    """Every event a component emitted, checked to arrive on the test's own event loop."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.off_loop: list[Event] = []
        self.listeners: list[Callable[[Event], None]] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if not on_loop:
            self.off_loop.append(event)
            return
        self.events.append(event)
        self._changed.set()
        for listener in self.listeners:
            listener(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def mark(self) -> int:
        return len(self.events)

    async def next(self, kind: type[E], *, since: int = 0, what: str = "") -> E:
        """The first event of this type at or after position ``since``."""

        def found() -> E | None:
            for event in self.events[since:]:
                if isinstance(event, kind):
                    return event
            return None

        event: E = await self.until(found, what or kind.__name__)
        return event

    async def until(self, check: Callable[[], Any], what: str) -> Any:
        deadline = self._loop.time() + WAIT
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise AssertionError(f"gave up waiting for {what}; events: {self.events!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` (sync or async) until it gives something truthy; fail after WAIT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class Ear:
    """Plays nothing: counts the frames of every remote track it is handed and how loud, and
    keeps the receiver each came with."""

    frames: int = 0
    loudest: int = 0
    tracks: int = 0
    handed: list[tuple[MediaStreamTrack, RTCRtpReceiver]] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __call__(self, track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        self.tracks += 1
        self.handed.append((track, receiver))
        task = asyncio.get_running_loop().create_task(self._listen(track))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames += 1
                if isinstance(frame, AudioFrame) and frame.format.name == "s16":
                    samples = array.array("h", bytes(frame.planes[0]))
                    if samples:
                        self.loudest = max(self.loudest, max(samples), -min(samples))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Box:
    """A box's whole network side, as the agent will wire it, with a tone as its microphone."""

    role: PartyKind
    client: SignallingClient
    links: LinkManager
    log: EventLog
    ear: Ear
    microphones: list[ToneTrack]
    runner: asyncio.Task[None]

    async def close(self) -> None:
        await self.links.aclose()
        await self.client.close()
        await self.runner
        await self.ear.close()
        assert self.log.off_loop == [], "events must arrive on the event loop"


def start_box(
    ws_url: str,
    token: str,
    role: PartyKind,
    *,
    settings: LinkSettings = LOOPBACK,
    backoff: Backoff | None = None,
    clock: FixedClock | None = None,
    tune_sdp: Callable[[str], str] | None = None,
) -> Box:
    log = EventLog()
    ear = Ear()
    microphones: list[ToneTrack] = []

    def microphone() -> MediaStreamTrack:
        track = ToneTrack()
        microphones.append(track)
        return track

    client = SignallingClient(
        ws_url,
        SecretStr(token),
        log,
        clock or FixedClock(NOW),
        backoff=backoff or Backoff(first=0.05, cap=0.5),
    )
    links = LinkManager(
        client,
        log,
        role=role,
        microphone=microphone,
        on_remote_audio=ear,
        settings=settings,
        tune_sdp=tune_sdp,
    )
    runner = asyncio.get_running_loop().create_task(client.run())
    return Box(role, client, links, log, ear, microphones, runner)


class RestartableServer:
    """The real app under uvicorn on a fixed loopback port, which can stop and start again
    (same database, same port), as a server that crashed and came back."""

    def __init__(self, settings: ServerSettings, clock: FixedClock, port: int) -> None:
        self.settings = settings
        self.clock = clock
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings, clock=self.clock),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        thread.start()
        for _ in range(1000):
            if server.started:
                break
            if not thread.is_alive():
                raise RuntimeError("server did not start")
            threading.Event().wait(0.01)
        else:
            raise RuntimeError("server did not start")
        self._server, self._thread = server, thread

    def stop(self) -> None:
        """Blocks until uvicorn has finished: call it with ``asyncio.to_thread`` from a test,
        so the clients on the test's loop can answer the closing handshakes."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


@dataclass
class Turn:
    """A coturn on loopback in ``use-auth-secret`` mode, as the server's TURN secret expects."""

    url: str
    secret: str


def stun_answers(port: int) -> bool:
    """True when something answers a STUN binding request on this loopback UDP port."""
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, secrets.token_bytes(12))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            sock.recv(2048)
        except TimeoutError:
            return False
    return True


@contextlib.contextmanager
def running_coturn(directory: Path) -> Iterator[Turn]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = secrets.token_hex(16)
    config = directory / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                "min-port=49152",
                "max-port=49999",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                "realm=twm.test",
                "allow-loopback-peers",
                "no-cli",
                "no-tls",
                "no-dtls",
                "simple-log",
                f"log-file={directory / 'turn.log'}",
                f"pidfile={directory / 'turn.pid'}",
                f"userdb={directory / 'turndb'}",
            ]
        )
        + "\n"
    )
    process = subprocess.Popen(
        ["/usr/bin/turnserver", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if stun_answers(port):
                break
            if process.poll() is not None:
                raise RuntimeError(f"coturn exited: see {directory / 'turn.log'}")
        else:
            raise RuntimeError("coturn did not answer STUN")
        yield Turn(url=f"turn:127.0.0.1:{port}?transport=udp", secret=secret)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def negotiate_on_loopback(
    offerer: RTCPeerConnection,
    answerer: RTCPeerConnection,
    tune_sdp: Callable[[str], str] | None = None,
) -> None:
    """Offer and answer between two peer connections of this process, host candidates on
    127.0.0.1 only (aioice leaves loopback out otherwise); ``tune_sdp`` rewrites each SDP on
    its way across, as the box does to what it sends."""

    def across(description: RTCSessionDescription | None) -> RTCSessionDescription:
        assert description is not None
        if tune_sdp is None:
            return description
        return RTCSessionDescription(tune_sdp(description.sdp), description.type)

    with host_addresses(("127.0.0.1",)):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(across(offerer.localDescription))
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(across(answerer.localDescription))
