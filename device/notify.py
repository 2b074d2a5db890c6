"""Telling systemd how the box is: READY, WATCHDOG and STATUS over ``$NOTIFY_SOCKET``.

    notifier = Notifier.from_environment()        # does nothing when not run by systemd
    notifier.ready("waiting for a session")
    notifier.status("live with St Mary's School")
    if notifier.watchdog_seconds is not None:     # WatchdogSec= in the unit
        ... notifier.watchdog() at half that interval, only while the box is healthy

The protocol is one datagram of ``KEY=VALUE`` lines to an ``AF_UNIX`` socket (sd_notify(3)); a
name starting with ``@`` is in the abstract namespace. Sending never blocks and never raises: a
box must not stop because systemd is restarting, and a missed WATCHDOG is exactly what systemd is
there to act on. ``WATCHDOG_PID`` says which process systemd expects the pings from; another
process (a child, a test) sees no watchdog.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("twm.device.notify")

MAX_STATUS_CHARACTERS = 200  # systemctl shows one line; the rest would only be cut off


class Notifier:
    def __init__(self, address: str | None, watchdog_seconds: float | None) -> None:
        self._address = _socket_address(address) if address else None
        self.watchdog_seconds = watchdog_seconds
        self._socket: socket.socket | None = None
        self._last_status: str | None = None
        self.failures = 0  # datagrams that could not be sent

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, _watchdog_seconds(env))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={_one_line(status)}")
        self._last_status = status

    def status(self, status: str) -> None:
        """Send STATUS only when it changed: systemd keeps the last one."""
        if status != self._last_status:
            self._send(f"STATUS={_one_line(status)}")
            self._last_status = status

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            if self._socket is None:
                # Python sockets are close-on-exec already.
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message.encode(), self._address)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("could not notify systemd", error=str(exc), failures=self.failures)


def _socket_address(name: str) -> str:
    # "@name" is Linux's abstract namespace, which Python spells with a leading NUL byte.
    return "\0" + name[1:] if name.startswith("@") else name


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # the watchdog is meant for another process
    return int(usec) / 1_000_000


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_STATUS_CHARACTERS]
