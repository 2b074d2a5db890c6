"""When the provisioning tool counts a box as online at the server (provisioning/health.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioning.health import is_online
from provisioning.server import DeviceRecord

BEFORE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def record(online: bool | None, seen: datetime | None) -> DeviceRecord:
    return DeviceRecord(id=1, name="twm-rosewood", online=online, last_seen_at=seen)


def test_a_box_connected_now_is_online_when_no_restart_is_awaited() -> None:
    assert is_online(record(True, BEFORE), seen_before=None)


def test_a_server_that_says_offline_is_believed() -> None:
    assert not is_online(record(False, BEFORE + timedelta(seconds=5)), seen_before=None)
    assert not is_online(record(False, BEFORE + timedelta(seconds=5)), seen_before=BEFORE)


def test_after_a_restart_only_a_new_connection_counts() -> None:
    # The old connection may still be listed as online for a moment after the restart.
    assert not is_online(record(True, BEFORE), seen_before=BEFORE)
    assert is_online(record(True, BEFORE + timedelta(seconds=1)), seen_before=BEFORE)


def test_an_older_server_without_the_online_field_is_judged_by_last_seen() -> None:
    assert not is_online(record(None, None), seen_before=None)
    assert is_online(record(None, BEFORE), seen_before=None)
    assert not is_online(record(None, BEFORE), seen_before=BEFORE)
    assert is_online(record(None, BEFORE + timedelta(seconds=1)), seen_before=BEFORE)
