"""The systemd notify protocol, checked on a datagram socket the test binds (as systemd would)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.notify import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(5)
    yield str(path), listener
    listener.close()


def received(listener: socket.socket) -> list[str]:
    messages = []
    listener.setblocking(False)
    try:
        while True:
            messages.append(listener.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        listener.settimeout(5)
    return messages


def test_ready_watchdog_status_and_stopping_arrive_as_systemd_reads_them(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, listener = systemd_socket
    with Notifier.from_environment({"NOTIFY_SOCKET": path}) as notifier:
        notifier.ready("waiting for a session")
        notifier.watchdog()
        notifier.status("live with\nSt Mary's")
        notifier.stopping()

    assert received(listener) == [
        "READY=1\nSTATUS=waiting for a session",
        "WATCHDOG=1",
        "STATUS=live with St Mary's",
        "STOPPING=1",
    ]


def test_status_is_sent_only_when_it_changes(systemd_socket: tuple[str, socket.socket]) -> None:
    path, listener = systemd_socket
    with Notifier(path, None) as notifier:
        for status in ("idle", "idle", "live", "live", "idle"):
            notifier.status(status)

    assert received(listener) == ["STATUS=idle", "STATUS=live", "STATUS=idle"]


def test_abstract_socket_names_are_understood() -> None:
    name = f"twm-test-{secrets.token_hex(4)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(5)
    try:
        with Notifier(f"@{name}", None) as notifier:
            notifier.watchdog()
        assert listener.recv(64) == b"WATCHDOG=1"
    finally:
        listener.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})

    notifier.ready("idle")
    notifier.watchdog()

    assert not notifier.enabled
    assert notifier.watchdog_seconds is None
    assert notifier.failures == 0


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    with Notifier(str(tmp_path / "gone"), None) as notifier:
        notifier.watchdog()
        notifier.watchdog()

    assert notifier.failures == 2


@pytest.mark.parametrize(
    ("environ", "seconds"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_interval_is_taken_only_when_meant_for_this_process(
    environ: dict[str, str], seconds: float | None
) -> None:
    assert Notifier.from_environment(environ).watchdog_seconds == seconds
