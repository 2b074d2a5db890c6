"""The private PipeWire as a pytest fixture: one for the whole session, shared by every module.

    from tests.pipewire import pipewire_fixture  # noqa: F401  (provides ``pipewire``)

The rig itself is product code (``device.audio.virtual``): the demo uses it too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from device.audio.virtual import Box, PipeWire
from device.errors import AudioError

__all__ = ["Box", "PipeWire", "pipewire_fixture"]


class _Shared:
    """One PipeWire for the whole session, however many test modules import the fixture."""

    lock = threading.Lock()
    instance: PipeWire | None = None
    users = 0


@pytest.fixture(scope="session", name="pipewire")
def pipewire_fixture() -> Iterator[PipeWire]:
    with _Shared.lock:
        if _Shared.instance is None:
            try:
                _Shared.instance = PipeWire.start()
            except AudioError as exc:
                pytest.fail(str(exc))
        _Shared.users += 1
        running = _Shared.instance
    try:
        yield running
    finally:
        with _Shared.lock:
            _Shared.users -= 1
            if _Shared.users == 0:
                _Shared.instance = None
                running.stop()
