"""The pin factory is the one settings name: mock pins only when asked for, a clear error
where a real one cannot open."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.controls import Buttons, Lights, pin_factory
from device.errors import ControlsError, DeviceError
from device.lifecycle.events import Event
from device.settings import PinSettings


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    factory = pin_factory(PinSettings(factory="mock"))
    yield factory
    factory.close()
    factory.reset()


def test_mock_gives_gpiozeros_mock_factory_with_pins_that_dim(mock_factory: MockFactory) -> None:
    assert isinstance(mock_factory, MockFactory)
    assert isinstance(mock_factory.pin(12), MockPWMPin)


@pytest.mark.parametrize("name", ["lgpio", "rpigpio", "native"])
def test_a_real_factory_on_a_machine_without_gpio_says_to_use_mock(name: str) -> None:
    with pytest.raises(ControlsError) as raised:
        pin_factory(PinSettings.model_validate({"factory": name}))
    message = str(raised.value)
    assert "no GPIO on this machine" in message
    assert "set pins.factory = 'mock' for a laptop or the demo" in message
    assert isinstance(raised.value, DeviceError)


async def test_devices_use_the_factory_from_settings_not_gpiozeros_global(
    mock_factory: MockFactory,
) -> None:
    before = Device.pin_factory
    settings = PinSettings(factory="mock")
    events: list[Event] = []
    buttons = Buttons(settings, mock_factory, asyncio.get_running_loop(), events.append)
    lights = Lights(settings, mock_factory)
    try:
        assert Device.pin_factory is before
        # The pins the devices use are the settings' factory's.
        assert mock_factory.pin(settings.start).function == "input"
        assert mock_factory.pin(settings.status_light).function == "output"
    finally:
        lights.close()
        buttons.close()
