"""The buttons, through gpiozero's mock pins: each press gives its one event, on the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from device.controls import Buttons
from device.errors import ControlsError
from device.lifecycle.events import (
    Event,
    MutePressed,
    ReactPressed,
    StartHeld,
    StartPressed,
    VolumePressed,
)
from device.settings import PinSettings
from session_server.protocol import ReactionKind
from tests.waiting import until


class Inbox:
    """Stands in for the agent's on_event: what arrived, and on which threads."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[int] = set()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.threads.add(threading.get_ident())


def press(pin: MockPin) -> None:
    pin.drive_low()
    pin.drive_high()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def buttons(pins: PinSettings, factory: MockFactory, inbox: Inbox) -> AsyncIterator[Buttons]:
    buttons = Buttons(pins, factory, asyncio.get_running_loop(), inbox)
    yield buttons
    buttons.close()


async def test_a_short_press_of_start_gives_exactly_start_pressed(
    pins: PinSettings, factory: MockFactory, buttons: Buttons, inbox: Inbox
) -> None:
    await asyncio.to_thread(press, factory.pin(pins.start))
    await until(lambda: inbox.events)
    # Past the hold time: a wrongly fired hold would have arrived by now.
    await asyncio.sleep(pins.hold_seconds * 2)
    assert inbox.events == [StartPressed()]


async def test_holding_start_gives_exactly_start_held_and_no_start_pressed(
    pins: PinSettings, factory: MockFactory, buttons: Buttons, inbox: Inbox
) -> None:
    start = factory.pin(pins.start)
    await asyncio.to_thread(start.drive_low)
    await until(lambda: inbox.events)
    assert inbox.events == [StartHeld()]
    # The release's event, if any, is handed over before to_thread's own result.
    await asyncio.to_thread(start.drive_high)
    await asyncio.sleep(0)
    assert inbox.events == [StartHeld()]


async def test_a_press_after_a_hold_is_a_press_again(
    pins: PinSettings, factory: MockFactory, buttons: Buttons, inbox: Inbox
) -> None:
    start = factory.pin(pins.start)
    await asyncio.to_thread(start.drive_low)
    await until(lambda: inbox.events)
    await asyncio.to_thread(start.drive_high)
    await asyncio.to_thread(press, start)
    await until(lambda: len(inbox.events) == 2)
    assert inbox.events == [StartHeld(), StartPressed()]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("clap", ReactPressed(ReactionKind.CLAP)),
        ("heart", ReactPressed(ReactionKind.HEART)),
        ("volume_up", VolumePressed(+1)),
        ("volume_down", VolumePressed(-1)),
        ("mute", MutePressed()),
    ],
)
async def test_each_other_button_gives_its_event(
    name: str,
    event: Event,
    pins: PinSettings,
    factory: MockFactory,
    buttons: Buttons,
    inbox: Inbox,
) -> None:
    await asyncio.to_thread(press, factory.pin(getattr(pins, name)))
    await until(lambda: inbox.events)
    assert inbox.events == [event]


async def test_events_arrive_on_the_loops_thread(
    pins: PinSettings, factory: MockFactory, buttons: Buttons, inbox: Inbox
) -> None:
    loop_thread = threading.get_ident()
    # A press on a worker thread (as lgpio's callback thread), and a hold fired by gpiozero's
    # own hold timer thread.
    await asyncio.to_thread(press, factory.pin(pins.heart))
    start = factory.pin(pins.start)
    await asyncio.to_thread(start.drive_low)
    await until(lambda: StartHeld() in inbox.events)
    await asyncio.to_thread(start.drive_high)
    assert inbox.events == [ReactPressed(ReactionKind.HEART), StartHeld()]
    assert inbox.threads == {loop_thread}


async def test_after_close_no_event_is_handed_over_and_the_pins_are_free(
    pins: PinSettings, factory: MockFactory, inbox: Inbox
) -> None:
    loop = asyncio.get_running_loop()
    buttons = Buttons(pins, factory, loop, inbox)
    buttons.close()
    await asyncio.to_thread(press, factory.pin(pins.mute))
    await asyncio.sleep(0)
    assert inbox.events == []
    again = Buttons(pins, factory, loop, inbox)  # would raise if a pin were still reserved
    try:
        await asyncio.to_thread(press, factory.pin(pins.mute))
        await until(lambda: inbox.events)
        assert inbox.events == [MutePressed()]
    finally:
        again.close()


async def test_a_pin_already_in_use_is_a_controls_error_naming_the_setting(
    pins: PinSettings, factory: MockFactory, buttons: Buttons, inbox: Inbox
) -> None:
    with pytest.raises(ControlsError, match=rf"GPIO{pins.start} for the button pins\.start"):
        Buttons(pins, factory, asyncio.get_running_loop(), inbox)
    # The first Buttons still works: the failed second one released only what it had opened.
    await asyncio.to_thread(press, factory.pin(pins.clap))
    await until(lambda: inbox.events)
    assert inbox.events == [ReactPressed(ReactionKind.CLAP)]
