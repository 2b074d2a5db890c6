"""``twm-device test-audio``'s core on the fake card: the tone goes out on the card's clock, and
the result says what the microphone heard."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from device.audio.fake_card import FakeCardFactory
from device.audio.selftest import SelfTestResult, self_test
from device.errors import AudioError
from device.settings import AudioSettings
from tests.audio_support import until

SETTINGS = AudioSettings(input="mic", output="speaker")


async def drive(factory: FakeCardFactory, gain: float, stop: asyncio.Event) -> None:
    """The fake card's clock: each 10 ms the speaker plays, and the mic hears it at ``gain``."""
    await until(lambda: factory.cards, "the self test to open the card")
    card = factory.card
    while not stop.is_set() and card.running:
        out = card.pull_output()
        card.push_input((out * gain * 32767).astype(np.int16))
        await asyncio.sleep(0)


async def run(factory: FakeCardFactory, gain: float) -> SelfTestResult:
    stop = asyncio.Event()
    driver = asyncio.ensure_future(drive(factory, gain, stop))
    try:
        return await self_test(SETTINGS, card_factory=factory)
    finally:
        stop.set()
        await driver


async def test_a_microphone_that_hears_the_speaker_reports_the_tone() -> None:
    factory = FakeCardFactory()
    result = await run(factory, gain=0.5)
    assert result.heard_tone
    # The tone is 0.25 (RMS -15 dBFS); heard at half that: about -21 dBFS, and over the 1.3 s
    # listened to (the tone and the tail after it) the RMS is 10·log10(1/1.3) dB lower.
    assert result.tone_dbfs == pytest.approx(-21, abs=1.5)
    assert result.rms_dbfs == pytest.approx(-22.1, abs=0.5)
    assert result.peak_dbfs == pytest.approx(-18, abs=1.0)
    assert result.captured_seconds >= result.tone_seconds
    assert (result.input_name, result.output_name) == ("mic", "speaker")
    assert "heard" in result.summary() and "NOT" not in result.summary()
    assert not factory.card.running  # the card is let go


async def test_a_deaf_microphone_is_reported_as_not_hearing() -> None:
    result = await run(FakeCardFactory(), gain=0.0)
    assert not result.heard_tone
    assert result.rms_dbfs <= -100
    assert "NOT heard" in result.summary()


async def test_a_card_that_fails_during_the_test_is_an_audio_error() -> None:
    factory = FakeCardFactory()

    async def fail_soon() -> None:
        await until(lambda: factory.cards, "the self test to open the card")
        factory.card.pull_output()
        factory.card.fail("the speaker (speaker) stopped: the sound card was unplugged or failed")

    failing = asyncio.ensure_future(fail_soon())
    with pytest.raises(AudioError, match="unplugged"):
        await self_test(SETTINGS, card_factory=factory)
    await failing
    assert not factory.card.running


async def test_a_missing_card_is_an_audio_error_naming_the_setting() -> None:
    factory = FakeCardFactory()
    factory.unplugged = True
    with pytest.raises(AudioError, match="TWM_DEVICE_AUDIO__INPUT"):
        await self_test(SETTINGS, card_factory=factory)
