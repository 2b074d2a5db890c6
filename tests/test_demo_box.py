"""The README's first command, whole: server, a box on a virtual sound card, music in its room,
buttons on the keyboard. Run as a person would, on a terminal (a pseudo-terminal here)."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from device import status
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
CODE = re.compile(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WAIT = 60.0


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    terminal: int
    data_dir: Path
    port: int
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return ANSI.sub("", "".join(self.output))

    def press(self, key: str) -> None:
        os.write(self.terminal, key.encode())

    def box(self) -> status.Status | None:
        return status.read(self.data_dir / "box" / "run")

    def until(self, check: object, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if callable(check) and check():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the demo exited while waiting for {what}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"waited {WAIT:g} s for {what}; the demo said:\n{self.text()}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    master, slave = pty.openpty()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--data-dir", str(tmp_path / "demo"),
         "--port", str(port), "--virtual"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, cwd=REPO,
    )  # fmt: skip
    os.close(slave)
    running = Demo(process, master, tmp_path / "demo", port)

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            running.output.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl+C reaches the whole terminal's group
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        os.close(master)


def test_the_demo_runs_a_box_that_hears_music_and_joins_on_a_key(demo: Demo) -> None:
    demo.until(lambda: CODE.search(demo.text()), "the access code to be printed")
    assert f"http://127.0.0.1:{demo.port}/" in demo.text()
    code = CODE.search(demo.text())
    assert code is not None

    demo.until(lambda: (s := demo.box()) is not None and s.state == "session_soon", "the box glows")
    # The tune playing in the care home's room reaches the box's microphone.
    demo.until(
        lambda: (s := demo.box()) is not None and s.audio is not None
        and s.audio.input_dbfs is not None and s.audio.input_dbfs > -40,
        "the box's microphone to hear the music",
    )  # fmt: skip

    demo.press("s")  # START
    demo.until(lambda: (s := demo.box()) is not None and s.state == "waiting", "the box waits")

    # The school can sign in with the printed code and sees the box's session open to join.
    signed_in = httpx.post(
        f"http://127.0.0.1:{demo.port}/api/school/sign-in", json={"code": code.group(0)}
    )
    assert signed_in.status_code == 200
    sessions = httpx.get(
        f"http://127.0.0.1:{demo.port}/api/school/sessions",
        headers={"Authorization": f"Bearer {signed_in.json()['ticket']}"},
    ).json()
    assert any(o["can_join"] for o in sessions["occurrences"])

    demo.press("S")  # hold START: leave
    demo.until(lambda: (s := demo.box()) is not None and s.state == "ended", "the box leaves")
