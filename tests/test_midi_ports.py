"""MIDI ports through a real JACK server: instruments and synths found by name, noticed as they
come and go, and never holding up the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Literal

import mido
import pytest
import rtmidi  # type: ignore[import-untyped]

from device.midi.ports import MAX_QUEUED, Backend, MidiPorts, PortsState, choose
from device.midi.wire import now_ms
from device.settings import MidiSettings
from tests.box_support import until
from tests.jack import (  # noqa: F401  (fixtures: ``jack``, ``virtual_ports``)
    Jack,
    jack_fixture,
    virtual_ports_fixture,
)

WAIT_SECONDS = 10.0  # a failsafe for something that never happens; never a measurement
POLL = 0.05
# Far longer than JACK takes to deliver a note (a few of its 5 ms cycles).
BUSY_SECONDS = 0.5


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


class Box:
    """What a box's code would see of its ports: messages and port changes, on the loop."""

    def __init__(self) -> None:
        self.messages: list[mido.Message] = []
        self.stamps: list[float] = []
        self.states: list[PortsState] = []
        self.threads: set[int] = set()

    def on_message(self, message: mido.Message, t_ms: float) -> None:
        self.threads.add(threading.get_ident())
        self.messages.append(message)
        self.stamps.append(t_ms)

    def on_change(self, state: PortsState) -> None:
        self.threads.add(threading.get_ident())
        self.states.append(state)


@pytest.fixture
def box() -> Box:
    return Box()


def test_a_name_pattern_picks_the_exact_name_first_then_the_first_partial_match() -> None:
    names = [
        "Midi Through:Midi Through Port-0 14:0",
        "Launchkey Mini:Launchkey Mini MIDI 1 24:0",
        "Launchkey Mini:Launchkey Mini MIDI 2 24:1",
        "RtMidiIn Client:RtMidi input 130:0",
        "keys",
    ]
    assert choose("launchkey", names) == "Launchkey Mini:Launchkey Mini MIDI 1 24:0"
    assert choose("MIDI 2", names) == "Launchkey Mini:Launchkey Mini MIDI 2 24:1"
    assert choose("KEYS", names) == "keys"  # exact, though "Launchkey" contains it too
    assert choose("through", names) is None  # it would echo the box's own notes back
    assert choose("Midi Through:Midi Through Port-0 14:0", names) == names[0]  # if you mean it
    assert choose("rtmidi", names) is None  # our own ports are never an instrument
    assert choose("  ", names) is None
    assert choose("Roland", names) is None


def test_the_settings_name_backend_and_playout_and_refuse_blank_patterns() -> None:
    settings = MidiSettings(inputs=["Launchkey"], backend="jack", playout_ms=30)
    assert Backend(settings.backend) is Backend.JACK
    assert MidiSettings().inputs == [] and MidiSettings().playout_ms == 20.0
    assert Backend(MidiSettings().backend) is Backend.ALSA
    with pytest.raises(ValueError, match="blank"):
        MidiSettings(outputs=[" "])
    with pytest.raises(ValueError, match="playout_ms"):
        MidiSettings(playout_ms=500)


async def test_an_instrument_plugged_in_after_start_is_noticed_and_played_on_the_loop(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    name = unique("Keys")
    ports = MidiPorts(
        Backend.JACK,
        inputs=[name.lower()],
        on_message=box.on_message,
        on_change=box.on_change,
        poll_seconds=POLL,
    )
    ports.start()
    try:
        await asyncio.sleep(POLL * 3)
        assert ports.state.inputs == ()  # nothing plugged in yet: nothing open, nothing wrong
        keys = jack.backend.open_output(name, virtual=True, client_name=name)
        virtual_ports.append(keys)
        await until(lambda: ports.state.inputs == (f"{name}:{name}",), "the keyboard is opened")
        await until(lambda: bool(box.states), "the change is told")
        assert box.states[-1].inputs == (f"{name}:{name}",)
        keys.send(mido.Message("clock"))  # stays home: never wakes the loop
        keys.send(mido.Message("note_on", note=60, velocity=99))
        keys.send(mido.Message("sysex", data=[1, 2, 3]))
        keys.send(mido.Message("note_off", note=60))
        await until(lambda: len(box.messages) == 2, "two notes arrive")
        assert box.messages == [
            mido.Message("note_on", note=60, velocity=99),
            mido.Message("note_off", note=60),
        ]
        assert box.threads == {threading.get_ident()}  # all handed over to the event loop
    finally:
        await ports.aclose()


async def test_a_message_is_stamped_when_it_arrives_not_when_the_loop_gets_to_it(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    """The stamp is the note's place in the rhythm: a loop busy with audio must not move it."""
    name = unique("Keys")
    keys = jack.backend.open_output(name, virtual=True, client_name=name)
    virtual_ports.append(keys)
    ports = MidiPorts(Backend.JACK, inputs=[name], on_message=box.on_message, poll_seconds=POLL)
    ports.start()
    try:
        await until(lambda: bool(ports.state.inputs), "the keyboard is opened")
        played_at = now_ms()
        keys.send(mido.Message("note_on", note=60, velocity=99))
        # The loop is busy (with the GIL free, as in numpy or a codec): blocking on purpose.
        time.sleep(BUSY_SECONDS)  # noqa: ASYNC251
        loop_free_at = now_ms()
        await until(lambda: bool(box.messages), "the note arrives")
        assert played_at <= box.stamps[0] < loop_free_at
    finally:
        await ports.aclose()


async def test_running_status_and_clock_bytes_inside_notes_lose_no_note(
    jack: Jack, box: Box
) -> None:
    """Events whose bytes are not one whole message each (a raw-MIDI bridge's, some USB
    drivers'): mido's own input would drop all but the first and the last."""
    name = unique("RawKeys")
    raw = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=name)
    raw.open_virtual_port(name)
    ports = MidiPorts(Backend.JACK, inputs=[name], on_message=box.on_message, poll_seconds=POLL)
    ports.start()
    try:
        await until(lambda: bool(ports.state.inputs), "the keyboard is opened")
        # (rtmidi sends at most 3 bytes an event, so the running status spans events.)
        raw.send_message([0x90, 60, 100])
        raw.send_message([64, 90])  # running status: another note-on, with no status byte
        raw.send_message([67, 80])  # and another
        raw.send_message([0x80, 0xF8, 60])  # a clock tick inside a note-off …
        raw.send_message([0])  # … that ends in the next event
        raw.send_message([0xB0, 64, 127])  # a whole message, as usual
        await until(lambda: len(box.messages) == 5, "five messages")
        assert box.messages == [
            mido.Message("note_on", note=60, velocity=100),
            mido.Message("note_on", note=64, velocity=90),
            mido.Message("note_on", note=67, velocity=80),
            mido.Message("note_off", note=60, velocity=0),
            mido.Message("control_change", control=64, value=127),
        ]
    finally:
        await ports.aclose()
        raw.close_port()
        raw.delete()


async def test_messages_sent_to_a_synth_reach_it_in_order(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    name = unique("Synth")
    heard: list[mido.Message] = []
    synth = jack.listen(name, heard.append)
    virtual_ports.append(synth)
    ports = MidiPorts(
        Backend.JACK, outputs=["SYNTH-" + name[6:]], on_message=box.on_message, poll_seconds=POLL
    )
    ports.start()
    try:
        await until(lambda: ports.state.outputs == (f"{name}:{name}",), "the synth is opened")
        played = [mido.Message("note_on", note=n, velocity=80) for n in range(40, 60)]
        for message in played:
            ports.send(message)
        await until(lambda: len(heard) == len(played), "the synth hears every note")
        assert heard == played
    finally:
        await ports.aclose()


async def test_an_instrument_pulled_out_is_closed_and_opened_again_when_it_is_back(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    keys_name, synth_name = unique("Pad"), unique("Synth")
    heard: list[mido.Message] = []
    synth = jack.listen(synth_name, heard.append)
    keys = jack.backend.open_output(keys_name, virtual=True, client_name=keys_name)
    virtual_ports += [synth, keys]
    ports = MidiPorts(
        Backend.JACK,
        inputs=[keys_name],
        outputs=[synth_name],
        on_message=box.on_message,
        on_change=box.on_change,
        poll_seconds=POLL,
    )
    ports.start()
    try:
        await until(lambda: ports.state.inputs == (f"{keys_name}:{keys_name}",), "pad opened")
        keys.close()  # pulled out
        await until(lambda: ports.state.inputs == (), "the missing pad is closed")
        assert ports.state.outputs == (f"{synth_name}:{synth_name}",)  # the synth stays
        ports.send(mido.Message("note_on", note=70, velocity=1))  # the rest goes on
        await until(lambda: len(heard) == 1, "the synth still plays")
        again = jack.backend.open_output(keys_name, virtual=True, client_name=keys_name)
        virtual_ports.append(again)
        await until(lambda: ports.state.inputs == (f"{keys_name}:{keys_name}",), "pad back")
        again.send(mido.Message("control_change", control=1, value=5))
        await until(lambda: len(box.messages) == 1, "the pad plays again")
        assert [state.inputs for state in box.states] == [
            (f"{keys_name}:{keys_name}",),
            (),
            (f"{keys_name}:{keys_name}",),
        ]
    finally:
        await ports.aclose()


class _Faulty:
    """A real port with a fault injected in front of it: its first write raises, or every write
    hangs until released (a USB driver in trouble)."""

    def __init__(self, port: Any, fault: Literal["raise", "hang"] | None) -> None:
        self.port = port
        self.name = port.name
        self.fault = fault
        self.release = threading.Event()

    def send(self, message: mido.Message) -> None:
        if self.fault == "raise":
            self.fault = None
            raise OSError("the device went away mid-write")
        if self.fault == "hang":
            self.release.wait()
        self.port.send(message)

    def close(self) -> None:
        self.port.close()


class _FaultyPorts(MidiPorts):
    """The first output opened is faulty; any opened after it is the real port alone."""

    def __init__(self, *args: Any, fault: Literal["raise", "hang"], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[_Faulty] = []
        self._fault: Literal["raise", "hang"] | None = fault

    def _open_output(self, name: str) -> Any:
        faulty = _Faulty(super()._open_output(name), self._fault)
        self._fault = None
        self.opened.append(faulty)
        return faulty


async def test_a_synth_that_raises_is_closed_and_opened_again(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    name = unique("Synth")
    heard: list[mido.Message] = []
    synth = jack.listen(name, heard.append)
    virtual_ports.append(synth)
    ports = _FaultyPorts(
        Backend.JACK,
        outputs=[name],
        on_message=box.on_message,
        on_change=box.on_change,
        poll_seconds=POLL,
        fault="raise",
    )
    ports.start()
    try:
        await until(lambda: len(ports.opened) == 1, "the synth is opened")
        ports.send(mido.Message("note_on", note=1, velocity=1))  # raises inside: port closed
        await until(lambda: len(ports.opened) == 2, "the synth is opened again")
        ports.send(mido.Message("note_on", note=2, velocity=1))
        await until(lambda: len(heard) == 1, "the reopened synth plays")
        assert heard == [mido.Message("note_on", note=2, velocity=1)]
        assert [state.outputs for state in box.states] == [
            (f"{name}:{name}",),
            (),
            (f"{name}:{name}",),
        ]
    finally:
        await ports.aclose()


async def test_a_hanging_synth_never_blocks_the_loop_and_excess_is_dropped_and_counted(
    jack: Jack, box: Box, virtual_ports: list[Any]
) -> None:
    name = unique("Synth")
    heard: list[mido.Message] = []
    synth = jack.listen(name, heard.append)
    virtual_ports.append(synth)
    ports = _FaultyPorts(
        Backend.JACK, outputs=[name], on_message=box.on_message, poll_seconds=POLL, fault="hang"
    )
    ports.start()
    try:
        await until(lambda: len(ports.opened) == 1, "the synth is opened")
        ports.send(mido.Message("note_on", note=0, velocity=1))  # the worker hangs on this one
        await until(lambda: ports.queued == 0, "the worker took the first note")
        flood = [mido.Message("note_on", note=n % 128, velocity=1) for n in range(3_000)]
        for message in flood:  # from the loop, with the worker stuck: must return every time
            ports.send(message)
        assert ports.dropped == 3_000 - MAX_QUEUED
        ports.opened[0].release.set()  # the driver recovers
        await until(lambda: ports.queued == 0, "the worker wrote what was queued")
        await until(lambda: bool(heard), "the synth plays again")
        assert heard[0] == mido.Message("note_on", note=0, velocity=1)
        # (rtmidi's JACK output drops what overflows its own ring buffer in such a burst, so
        # not every queued note is heard; the next message gets through once it has drained.)
        marker = mido.Message("note_off", channel=5, note=99)
        for _ in range(int(WAIT_SECONDS / 0.05)):
            if marker in heard:
                break
            ports.send(marker)
            await until(lambda: ports.queued == 0, "the marker is written")
            await asyncio.sleep(0.05)
        assert marker in heard
    finally:
        await ports.aclose()


async def test_a_midi_system_that_cannot_be_listed_is_survived(box: Box) -> None:
    # No ALSA sequencer here (LAB.md): listing fails on every look, and nothing else happens.
    ports = MidiPorts(
        Backend.ALSA,
        inputs=["Launchkey"],
        outputs=["Roland"],
        on_message=box.on_message,
        poll_seconds=POLL,
    )
    ports.start()
    assert ports.running
    ports.rescan()
    ports.send(mido.Message("note_on", note=60))
    await asyncio.sleep(POLL * 4)
    assert ports.state == PortsState((), ())
    await ports.aclose()
    assert not ports.running
