"""Shared fixtures: a real session server on a free loopback port, with a clock tests can move."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from session_server.app import create_app
from session_server.clock import FixedClock
from session_server.settings import ServerSettings

# Fixtures shared by several test modules, registered once here.
pytest_plugins = ["tests.browser", "tests.controls_support"]

ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    url: str
    ws_url: str
    settings: ServerSettings
    clock: FixedClock
    admin_headers: dict[str, str]


@pytest.fixture
def clock() -> FixedClock:
    # A Tuesday afternoon, London winter time (UTC+0).
    return FixedClock(datetime(2026, 11, 24, 13, 50, tzinfo=UTC))


@pytest.fixture
def server_settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=tmp_path / "server",
        admin_token=ADMIN_TOKEN,
    )


@contextmanager
def serving(
    settings: ServerSettings, clock: FixedClock, host: str = "127.0.0.1"
) -> Iterator[RunningServer]:
    """The real app under uvicorn, on its own thread and event loop, on a free port of ``host``."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, clock=clock),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if uv.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("server did not start")
    try:
        yield RunningServer(
            url=f"http://{host}:{port}",
            ws_url=f"ws://{host}:{port}/ws",
            settings=settings,
            clock=clock,
            admin_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(server_settings: ServerSettings, clock: FixedClock) -> Iterator[RunningServer]:
    with serving(server_settings, clock) as running:
        yield running
