"""A MIDI pad as the big buttons: a real pad port on the rig's JACK server (an instrument this
test plays), the pad's mapping from the settings, and the events the lifecycle would get."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import mido
import pytest
from pydantic import ValidationError

from device.controls.pad import Pad
from device.lifecycle.events import (
    Event,
    MutePressed,
    ReactPressed,
    StartHeld,
    StartPressed,
    VolumePressed,
)
from device.midi.ports import Backend, MidiPorts
from device.settings import MidiSettings, PadSettings, pad_key
from session_server.protocol import ReactionKind
from tests.box_support import until
from tests.jack import Jack, jack_fixture  # noqa: F401  (provides ``jack``)

HOLD_SECONDS = 0.3
POLL = 0.05


@pytest.fixture
def pad_port(jack: Jack) -> Iterator[Any]:
    name = f"Pad-{uuid.uuid4().hex[:6]}"
    port = jack.backend.open_output(name, virtual=True, client_name=name)
    try:
        yield port
    finally:
        port.close()


class Heard:
    def __init__(self) -> None:
        self.events: list[Event] = []


async def opened_pad(settings: PadSettings, heard: Heard) -> Pad:
    pad = Pad(
        settings,
        Backend.JACK,
        hold_seconds=HOLD_SECONDS,
        on_event=heard.events.append,
        poll_seconds=POLL,
    )
    pad.start()
    await until(lambda: pad.connected, "the pad's port opened")
    return pad


@pytest.fixture
def heard() -> Heard:
    return Heard()


def note(number: int, down: bool = True, channel: int = 0) -> mido.Message:
    kind = "note_on" if down else "note_off"
    return mido.Message(kind, note=number, velocity=100 if down else 0, channel=channel)


async def test_each_key_of_the_default_mapping_gives_its_buttons_event(
    pad_port: Any, heard: Heard
) -> None:
    pad = await opened_pad(PadSettings(port=pad_port.name.split(":")[0]), heard)
    try:
        for number in (37, 38, 39, 40, 41, 50):  # 50 is no button: nothing
            pad_port.send(note(number))
            pad_port.send(note(number, down=False))
        await until(lambda: len(heard.events) >= 5, "five button events")
        pad_port.send(note(37))  # a marker after the unmapped key: it surely came first
        await until(lambda: len(heard.events) >= 6, "the marker")
        assert heard.events == [
            ReactPressed(ReactionKind.CLAP),
            ReactPressed(ReactionKind.HEART),
            VolumePressed(+1),
            VolumePressed(-1),
            MutePressed(),
            ReactPressed(ReactionKind.CLAP),
        ]
    finally:
        await pad.aclose()


async def test_start_is_a_join_when_let_go_and_a_leave_when_held(
    pad_port: Any, heard: Heard
) -> None:
    pad = await opened_pad(PadSettings(port=pad_port.name), heard)
    try:
        pad_port.send(note(36))
        pad_port.send(note(36, down=False))
        await until(lambda: heard.events == [StartPressed()], "a join")

        pad_port.send(note(36))
        await until(lambda: len(heard.events) == 2, "a leave, while still held")
        assert heard.events[1] == StartHeld()
        pad_port.send(note(36, down=False))  # letting go after the hold: no join as well
        pad_port.send(note(37))
        await until(lambda: len(heard.events) == 3, "the marker")
        assert heard.events[2] == ReactPressed(ReactionKind.CLAP)
    finally:
        await pad.aclose()


async def test_controllers_channels_and_repeats(pad_port: Any, heard: Heard) -> None:
    """A pad in CC mode (127 down, 0 up) on channel 10, that sends its down value again while
    held (as pads with pressure do): one event per strike, and the other channels' notes are
    somebody else's."""
    settings = PadSettings(port=pad_port.name, channel=10, start="cc 20", clap="CC 21")
    pad = await opened_pad(settings, heard)
    try:
        on_ten = 9
        pad_port.send(mido.Message("control_change", control=21, value=127, channel=on_ten))
        pad_port.send(mido.Message("control_change", control=21, value=100, channel=on_ten))
        pad_port.send(mido.Message("control_change", control=21, value=0, channel=on_ten))
        pad_port.send(mido.Message("control_change", control=21, value=127, channel=0))
        pad_port.send(mido.Message("control_change", control=20, value=127, channel=on_ten))
        pad_port.send(mido.Message("control_change", control=20, value=0, channel=on_ten))
        await until(lambda: len(heard.events) >= 2, "two events")
        pad_port.send(note(38, channel=on_ten))  # a marker
        await until(lambda: len(heard.events) >= 3, "the marker")
        assert heard.events == [
            ReactPressed(ReactionKind.CLAP),
            StartPressed(),
            ReactPressed(ReactionKind.HEART),
        ]
    finally:
        await pad.aclose()


async def test_the_bridge_s_inputs_never_open_the_pad(jack: Jack) -> None:
    """The pad's keys are buttons only: an input pattern that matches the pad as well as the
    keyboard opens the keyboard alone."""
    tag = uuid.uuid4().hex[:6]
    pad = jack.backend.open_output(f"Pad-{tag}", virtual=True, client_name=f"Pad-{tag}")
    keys = jack.backend.open_output(f"Keys-{tag}", virtual=True, client_name=f"Keys-{tag}")
    ports = MidiPorts(
        Backend.JACK,
        inputs=[tag, f"Pad-{tag}"],
        on_message=lambda message, t_ms: None,
        poll_seconds=POLL,
        avoid_inputs=[f"pad-{tag}"],
    )
    ports.start()
    try:
        await until(lambda: bool(ports.state.inputs), "an input opened")
        await asyncio.sleep(3 * POLL)  # a few more scans: the pad would have been opened by now
        assert [name.split(":")[0] for name in ports.state.inputs] == [f"Keys-{tag}"]
    finally:
        await ports.aclose()
        pad.close()
        keys.close()


def test_pad_keys_are_read_with_a_clear_error_for_a_mistake() -> None:
    assert pad_key("note 36") == ("note", 36)
    assert pad_key(" CC  20 ") == ("cc", 20)
    assert pad_key("controller 1") == ("cc", 1)
    for wrong in ("nte 36", "note", "note 128", "note -1", "36", "note 3 6"):
        with pytest.raises(ValueError, match="'note N' or 'cc N'"):
            pad_key(wrong)

    with pytest.raises(ValidationError, match=r"midi\.pad\.clap: 'drum 1' is not a pad key"):
        MidiSettings(pad={"port": "LPD8", "clap": "drum 1"})
    with pytest.raises(
        ValidationError, match=r"midi\.pad\.mute and midi\.pad\.start are both note 36"
    ):
        MidiSettings(pad={"port": "LPD8", "mute": "note 36"})
    with pytest.raises(ValidationError, match="channel"):
        MidiSettings(pad={"port": "LPD8", "channel": 17})
    with pytest.raises(ValidationError, match="blank"):
        MidiSettings(pad={"port": "  "})
    assert MidiSettings().pad.port is None  # no pad unless named
