"""Rooms with MIDI instruments for tests of whole boxes: each room has an instrument (a virtual
JACK output the test plays), a pad and a synth (a virtual JACK input the test listens to), on the
rig's JACK server (tests/jack.py), and the ``MidiSettings`` that name them for its box.

    room = Room(jack, "Home")                      # ports HomeKeys-…, HomePad-…, HomeSynth-…
    write_config(..., midi=room.settings)
    await played_until_heard(room.keys, other_room.synth, mido.Message("note_on", note=40))
    await until(lambda: released(other_room.synth, 40), "released", synth=other_room.synth)
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import mido
import pytest

from device.settings import MidiSettings, PadSettings
from tests import box_support
from tests.jack import Jack

HEARD_SECONDS = 20.0  # a failsafe for a busy shared machine, never a measurement
PLAYOUT_MS = 200.0  # the most the settings allow: room for a busy machine's hiccups


class Synth:
    """A synth port's side: what arrived and when (``time.monotonic()``, as it was polled:
    ``tests.jack.Listener``)."""

    def __init__(self, jack: Jack, name: str) -> None:
        self.lock = threading.Lock()
        self.heard: list[tuple[float, mido.Message]] = []
        self.port = jack.listen(name, self)

    def __call__(self, message: mido.Message) -> None:
        with self.lock:
            self.heard.append((time.monotonic(), message))

    def messages(self) -> list[mido.Message]:
        with self.lock:
            return [message for _, message in self.heard]

    def onsets(self, notes: list[int]) -> list[tuple[float, int]]:
        with self.lock:
            return [
                (at, m.note)
                for at, m in self.heard
                if m.type == "note_on" and m.velocity > 0 and m.note in notes
            ]


class Room:
    """One room's instrument and synth, and the settings that name them for its box."""

    def __init__(self, jack: Jack, name: str) -> None:
        tag = uuid.uuid4().hex[:6]
        self.keys_name, synth_name = f"{name}Keys-{tag}", f"{name}Synth-{tag}"
        pad_name = f"{name}Pad-{tag}"
        # The pad first: JACK lists it first, where a box that did not avoid it would take it.
        self.pad = jack.backend.open_output(pad_name, virtual=True, client_name=pad_name)
        self.keys = jack.backend.open_output(
            self.keys_name, virtual=True, client_name=self.keys_name
        )
        self.synth = Synth(jack, synth_name)
        self.settings = MidiSettings(
            # The room's name alone: it matches the pad too, which the box must leave to the
            # buttons (its notes are never played across).
            inputs=[name],
            outputs=[synth_name],
            backend="jack",
            playout_ms=PLAYOUT_MS,
            pad=PadSettings(port=pad_name),
        )

    def close(self) -> None:
        self.keys.close()
        self.pad.close()
        self.synth.port.close()


@pytest.fixture(name="rooms")
def rooms_fixture(jack: Jack) -> Iterator[tuple[Room, Room]]:
    """The care home's room and the school's, their ports closed however the test ends."""
    home, school = Room(jack, "Home"), Room(jack, "School")
    try:
        yield home, school
    finally:
        home.close()
        school.close()


async def until(
    check: Any, what: str, seconds: float = HEARD_SECONDS, synth: Synth | None = None
) -> None:
    """``tests.box_support.until``, saying what ``synth`` last heard when it gives up."""
    try:
        await box_support.until(check, what, seconds)
    except AssertionError as exc:
        if synth is None:
            raise
        raise AssertionError(f"{exc}; it heard {synth.messages()[-12:]}") from None


async def played_until_heard(keys: Any, synth: Synth, probe: mido.Message) -> None:
    """Play ``probe`` every so often until the far synth hears it: the boxes open their ports
    by polling, and JACK makes a connection real at its next cycle (a bounded wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEARD_SECONDS
    while probe not in synth.messages():
        assert loop.time() < deadline, f"the probe never reached {synth.port.name}"
        keys.send(probe)
        await asyncio.sleep(0.25)


def released(synth: Synth, note: int) -> bool:
    after = synth.messages()
    return (
        mido.Message("note_off", note=note, velocity=0) in after
        and mido.Message("control_change", control=123, value=0) in after
    )
