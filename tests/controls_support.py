"""Mock pins for the controls tests: settings with a short hold, and a factory reset after use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from device.controls import pin_factory
from device.settings import PinSettings


@pytest.fixture
def pins() -> PinSettings:
    # A short hold keeps the tests quick; nothing asserts how long anything took.
    return PinSettings(factory="mock", hold_seconds=0.3)


@pytest.fixture
def factory(pins: PinSettings) -> Iterator[MockFactory]:
    made = pin_factory(pins)
    assert isinstance(made, MockFactory)
    yield made
    made.close()
    made.reset()
