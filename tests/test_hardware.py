"""On a real box only (a Raspberry Pi with its sound card, buttons and lights): the parts that
CI replaces with PipeWire null sinks and gpiozero's MockFactory. Left out of CI by the
``hardware`` marker; run on the Pi with:

    TWM_DEVICE_CONFIG=/etc/twm/device.toml .venv/bin/pytest -m hardware tests/test_hardware.py
"""

from __future__ import annotations

import asyncio

import pytest
from gpiozero import LED, Button

from device.audio.cards import Direction, default_index, list_cards, resolve
from device.audio.selftest import self_test
from device.controls.pins import pin_factory
from device.settings import load

pytestmark = pytest.mark.hardware


def test_the_configured_sound_cards_exist_and_play_a_tone() -> None:
    settings = load()
    cards = list_cards()
    resolve(settings.audio.input, Direction.INPUT, cards, default_index(Direction.INPUT))
    resolve(settings.audio.output, Direction.OUTPUT, cards, default_index(Direction.OUTPUT))
    result = asyncio.run(self_test(settings.audio))
    assert result.captured_seconds > 0.5
    assert result.rms_dbfs > -100  # a live microphone is never digitally silent


def test_the_real_pins_drive_the_lights_and_read_the_buttons() -> None:
    settings = load()
    factory = pin_factory(settings.pins)
    try:
        on_air = LED(settings.pins.on_air_light, pin_factory=factory)
        on_air.on()
        assert on_air.value == 1
        on_air.off()
        assert on_air.value == 0
        on_air.close()
        start = Button(settings.pins.start, pull_up=True, pin_factory=factory)
        assert not start.is_pressed, "START reads pressed with nobody touching it: check wiring"
        start.close()
    finally:
        factory.close()
