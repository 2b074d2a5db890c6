"""The box tells systemd READY, its state as STATUS, and WATCHDOG only while it is healthy.

The notify socket is one the test binds (as systemd would), read by a thread that notes when each
datagram arrived, so the test can see what was (not) sent while the box's event loop was blocked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from device.agent import STATE_WORDS
from device.audio.fake_card import FakeCardFactory
from device.lifecycle.states import State
from tests.box_support import box_settings, running_box, until
from tests.conftest import RunningServer
from tests.seed import Pair, seed_pair

WATCHDOG_USEC = 400_000  # the box pings every 0.2 s


@dataclass
class SystemdSocket:
    path: Path
    heard: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, message)

    def messages(self, prefix: str) -> list[str]:
        return [message for _, message in list(self.heard) if message.startswith(prefix)]

    def watchdogs_between(self, start: float, end: float) -> int:
        return sum(
            1
            for when, message in list(self.heard)
            if message == "WATCHDOG=1" and start < when < end
        )


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SystemdSocket]:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.1)
    found = SystemdSocket(path)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                data = listener.recv(4096)
            except TimeoutError:
                continue
            found.heard.append((time.monotonic(), data.decode()))

    reader = threading.Thread(target=listen, name="systemd-notify", daemon=True)
    reader.start()
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    yield found
    stop.set()
    reader.join()
    listener.close()


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


async def test_ready_then_status_in_words_then_stopping(
    server: RunningServer, pair: Pair, tmp_path: Path, systemd: SystemdSocket
) -> None:
    server.clock.set(server.clock.now().replace(hour=9))  # no session open: the box goes idle
    settings = box_settings(tmp_path, "home", server_ws=server.ws_url, token=pair.care_home_token)
    async with running_box(settings, FakeCardFactory()) as box:
        await box.until_state(State.IDLE)
        await until(
            lambda: f"STATUS={STATE_WORDS[State.IDLE]}" in systemd.messages("STATUS="),
            "the idle status",
        )
        ready = systemd.messages("READY=1")

    await until(lambda: systemd.messages("STOPPING=1"), "STOPPING")
    assert ready == [f"READY=1\nSTATUS={STATE_WORDS[State.OFFLINE]}"]
    assert systemd.heard[0][1].startswith("READY=1")


async def test_watchdog_pings_stop_while_the_event_loop_is_blocked(
    server: RunningServer, pair: Pair, tmp_path: Path, systemd: SystemdSocket
) -> None:
    settings = box_settings(tmp_path, "home", server_ws=server.ws_url, token=pair.care_home_token)
    async with running_box(settings, FakeCardFactory()):
        await until(lambda: len(systemd.messages("WATCHDOG=1")) >= 3, "watchdog pings")

        blocked_from = time.monotonic()
        time.sleep(1.0)  # a stuck event loop: nothing on it runs  # noqa: ASYNC251
        blocked_until = time.monotonic()
        # A ping sent just before the block may land a moment after it began.
        silent = systemd.watchdogs_between(blocked_from + 0.1, blocked_until)

        resumed = len(systemd.messages("WATCHDOG=1"))
        await until(lambda: len(systemd.messages("WATCHDOG=1")) >= resumed + 2, "pings again")

    assert silent == 0


async def test_watchdog_is_withheld_when_the_audio_engine_stops_watching_its_card(
    server: RunningServer, pair: Pair, tmp_path: Path, systemd: SystemdSocket
) -> None:
    settings = box_settings(tmp_path, "home", server_ws=server.ws_url, token=pair.care_home_token)
    async with running_box(settings, FakeCardFactory()) as box:
        await until(lambda: len(systemd.messages("WATCHDOG=1")) >= 2, "watchdog pings")
        supervisor = box.agent._parts.audio._supervisor  # type: ignore[union-attr]
        assert supervisor is not None
        supervisor.cancel()  # the engine no longer watches its card, as if it were stuck
        await until(lambda: not box.agent._parts.audio.healthy, "the engine unhealthy")  # type: ignore[union-attr]
        stopped_at = time.monotonic()
        await asyncio.sleep(1.0)
        pings = systemd.watchdogs_between(stopped_at + 0.1, time.monotonic())

    assert pings == 0
