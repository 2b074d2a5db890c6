"""The keyboard presses the mock buttons, and the same Buttons code turns them into events."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import termios
from collections.abc import AsyncIterator, Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from device.controls import Buttons, Keyboard
from device.controls.keyboard import HELP
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


@pytest.fixture
async def events(pins: PinSettings, factory: MockFactory) -> AsyncIterator[list[Event]]:
    received: list[Event] = []
    buttons = Buttons(pins, factory, asyncio.get_running_loop(), received.append)
    yield received
    buttons.close()


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (the side a person types into, the side the box reads)."""
    typed, box = pty.openpty()
    yield typed, box
    os.close(typed)
    os.close(box)


async def test_keys_typed_on_a_terminal_press_the_buttons(
    pins: PinSettings,
    factory: MockFactory,
    events: list[Event],
    terminal: tuple[int, int],
) -> None:
    typed, box = terminal
    out = io.StringIO()
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=out)
    keyboard.start()
    try:
        # No Enter: the terminal hands over each key as it is typed.
        os.write(typed, b"s")
        await until(lambda: events)
        os.write(typed, b"ch+-m=")
        await until(lambda: len(events) == 7)
        assert events == [
            StartPressed(),
            ReactPressed(ReactionKind.CLAP),
            ReactPressed(ReactionKind.HEART),
            VolumePressed(+1),
            VolumePressed(-1),
            MutePressed(),
            VolumePressed(+1),
        ]
    finally:
        keyboard.close()


@pytest.mark.parametrize("key", [b"S", b"L", b"l"])
async def test_the_leave_keys_hold_start(
    key: bytes,
    pins: PinSettings,
    factory: MockFactory,
    events: list[Event],
    terminal: tuple[int, int],
) -> None:
    typed, box = terminal
    start = factory.pin(pins.start)
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=io.StringIO())
    keyboard.start()
    try:
        os.write(typed, key)
        await until(lambda: events)
        await until(lambda: start.state)  # let go after the hold
        assert events == [StartHeld()]
    finally:
        keyboard.close()


async def test_the_terminal_is_given_back_as_it_was(
    pins: PinSettings, factory: MockFactory, terminal: tuple[int, int]
) -> None:
    _, box = terminal
    before = termios.tcgetattr(box)
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=io.StringIO())
    keyboard.start()
    during = termios.tcgetattr(box)
    keyboard.close()
    assert during[3] & (termios.ICANON | termios.ECHO) == 0  # keys one by one, not echoed
    assert during[3] & termios.ISIG  # Ctrl-C still stops the box
    assert termios.tcgetattr(box) == before


async def test_the_key_help_is_printed_at_start_and_on_a_question_mark(
    pins: PinSettings, factory: MockFactory, terminal: tuple[int, int]
) -> None:
    typed, box = terminal
    out = io.StringIO()
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=out)
    keyboard.start()
    try:
        assert out.getvalue() == HELP + "\n"
        os.write(typed, b"?")
        await until(lambda: out.getvalue().count(HELP) == 2)
    finally:
        keyboard.close()


async def test_keys_from_a_pipe_work_and_its_end_stops_the_reading(
    pins: PinSettings, factory: MockFactory, events: list[Event]
) -> None:
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()
    keyboard = Keyboard(pins, factory, loop, fd=read_end, out=io.StringIO())
    keyboard.start()
    try:
        os.write(write_end, b"h")
        os.close(write_end)
        await until(lambda: events)
        assert events == [ReactPressed(ReactionKind.HEART)]
        # At the end of input the keyboard stops watching the pipe (else the loop would spin).
        await until(lambda: not loop.remove_reader(read_end))
    finally:
        keyboard.close()
        os.close(read_end)


async def test_keys_drive_the_pins_the_way_a_finger_would(
    pins: PinSettings, factory: MockFactory, events: list[Event], terminal: tuple[int, int]
) -> None:
    typed, box = terminal
    mute = factory.pin(pins.mute)
    mute.clear_states()
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=io.StringIO())
    keyboard.start()
    try:
        os.write(typed, b"m")
        await until(lambda: events)
        # Pulled up, pressed to ground, let go.
        assert [change.state for change in mute.states] == [True, False, True]
    finally:
        keyboard.close()


def test_the_keyboard_refuses_real_pins(factory: MockFactory) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ControlsError, match=r"set pins\.factory = 'mock'"):
            Keyboard(PinSettings(factory="lgpio"), factory, loop)
    finally:
        loop.close()


async def test_a_standard_input_that_cannot_be_watched_is_a_controls_error(
    pins: PinSettings, factory: MockFactory
) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=null, out=io.StringIO())
        with pytest.raises(ControlsError, match="keyboard = false"):
            keyboard.start()
    finally:
        os.close(null)


async def test_a_held_start_is_let_go_on_close(
    pins: PinSettings, factory: MockFactory, events: list[Event], terminal: tuple[int, int]
) -> None:
    typed, box = terminal
    start = factory.pin(pins.start)
    keyboard = Keyboard(pins, factory, asyncio.get_running_loop(), fd=box, out=io.StringIO())
    keyboard.start()
    os.write(typed, b"S")
    await until(lambda: not start.state)  # pressed (the buttons' pull-up held it high)
    keyboard.close()
    assert start.state
