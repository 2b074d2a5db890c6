"""``twm-server demo``: its seeding (idempotent on re-runs) and the command itself, end to end."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from session_server import directory
from session_server.cli import demo
from session_server.credentials import digest
from session_server.db.engine import DbSession, create_engine, migrate, session_factory
from session_server.db.models import AccessCode, CareHome, Pairing, School
from session_server.db.models import Session as SessionRow
from session_server.schedule import Window
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
WINDOW = Window(before=timedelta(minutes=15), after=timedelta(minutes=10))
NOW = datetime(2026, 11, 24, 13, 50, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[DbSession]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}")
    await migrate(engine)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def _seed(db: DbSession, tmp_path: Path, now: datetime) -> demo.DemoSeed:
    return await demo.seed_demo(db, now, zone="Europe/London", window=WINDOW, data_dir=tmp_path)


async def _count(db: DbSession, model: type[object]) -> int:
    return len(list(await db.scalars(select(model))))


async def test_demo_seed_has_a_session_open_now_and_a_weekly_one(
    db: DbSession, tmp_path: Path
) -> None:
    seed = await _seed(db, tmp_path, NOW)
    assert (seed.care_home, seed.school) == ("Rosewood Care Home", "Hillside Primary")
    assert seed.open_now.starts_local == "2026-11-24T13:45"
    assert seed.open_now.duration_minutes == 60
    assert seed.weekly.starts_local == "2026-11-25T14:00"
    assert seed.weekly.rrule == "FREQ=WEEKLY;BYDAY=WE"
    listed = await directory.list_occurrences(db, NOW, NOW + timedelta(minutes=1), WINDOW)
    assert [x.occurrence.session_id for x in listed] == [seed.open_now.id]
    assert listed[0].occurrence.window_opens_at <= NOW < listed[0].occurrence.window_closes_at

    token = seed.device_token_path.read_text().strip()
    assert stat.S_IMODE(seed.device_token_path.stat().st_mode) == 0o600
    device = await directory.device_named(db, demo.DEVICE)
    assert device is not None and device.token_hash == digest(token)
    code = await db.scalar(select(AccessCode))
    assert code is not None and code.code_hash == digest(seed.access_code)


async def test_demo_seed_rerun_reuses_everything_but_the_access_code(
    db: DbSession, tmp_path: Path
) -> None:
    first = await _seed(db, tmp_path, NOW)
    token = first.device_token_path.read_text()
    second = await _seed(db, tmp_path, NOW + timedelta(minutes=10))
    assert second.open_now.id == first.open_now.id
    assert second.weekly.id == first.weekly.id
    assert second.device_token_path.read_text() == token
    for model, expected in ((CareHome, 1), (School, 1), (Pairing, 1), (SessionRow, 2)):
        assert await _count(db, model) == expected, model
    assert second.access_code != first.access_code
    codes = list(await db.scalars(select(AccessCode).order_by(AccessCode.id)))
    assert [c.revoked_at is None for c in codes] == [False, True]
    assert codes[1].code_hash == digest(second.access_code)


async def test_demo_seed_opens_a_new_session_once_the_last_one_is_nearly_over(
    db: DbSession, tmp_path: Path
) -> None:
    first = await _seed(db, tmp_path, NOW)
    later = NOW + timedelta(minutes=45)  # 10 minutes of the first one left
    second = await _seed(db, tmp_path, later)
    assert second.open_now.id != first.open_now.id
    assert second.open_now.starts_local == "2026-11-24T14:30"
    assert second.weekly.id == first.weekly.id


async def test_demo_seed_replaces_a_lost_device_token(db: DbSession, tmp_path: Path) -> None:
    first = await _seed(db, tmp_path, NOW)
    old = first.device_token_path.read_text().strip()
    first.device_token_path.unlink()
    second = await _seed(db, tmp_path, NOW)
    new = second.device_token_path.read_text().strip()
    assert new != old
    device = await directory.device_named(db, demo.DEVICE)
    assert device is not None and device.token_hash == digest(new)


def test_demo_command_serves_the_school_page_with_a_working_access_code(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWM_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    process = subprocess.Popen(
        [sys.executable, "-m", "session_server.cli.main", "demo", "--data-dir", str(data_dir),
         "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    panel_shown = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Ctrl+C stops it" in line:
                panel_shown.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert panel_shown.wait(60), "".join(lines)
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in output
        match = re.search(r"Access code\s+([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})", output)
        assert match, output
        assert stat.S_IMODE((data_dir / "care-home-device.token").stat().st_mode) == 0o600

        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/", timeout=10).status_code == 200
        signed_in = httpx.post(
            f"{base}/api/school/sign-in", json={"code": match.group(1)}, timeout=10
        )
        assert signed_in.status_code == 200, signed_in.text
        sessions = httpx.get(
            f"{base}/api/school/sessions",
            headers={"Authorization": f"Bearer {signed_in.json()['ticket']}"},
            timeout=10,
        ).json()
        assert sessions["school"]["name"] == "Hillside Primary"
        joinable = [o for o in sessions["occurrences"] if o["can_join"]]
        assert [o["care_home"]["name"] for o in joinable] == ["Rosewood Care Home"]

        admin_token = (data_dir / "admin.token").read_text().strip()
        occurrences = httpx.get(
            f"{base}/api/occurrences",
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=10,
        )
        assert occurrences.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        exit_code = process.wait(timeout=30)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0, "".join(lines)
    assert "Demo stopped" in "".join(lines)
