"""MIDI across a real session: two whole boxes (``twm-device run`` processes, as systemd runs
them), the real session server, real sound cards on the PipeWire rig and real MIDI ports on a
private JACK server (``midi.backend = "jack"``; LAB.md: there is no ALSA sequencer here).

Each room has an instrument (a virtual JACK output this test plays) and a synth (a virtual JACK
input this test listens to), named in that box's settings. What it proves: notes played in the
care home come out of the school box's synth in order and in rhythm, and the school's come out
in the care home; when the session ends with notes held, they are released on both sides. The
care home has no buttons but a MIDI pad (``midi.pad``): its START pad joins and, held, leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mido
import pytest

from device.lifecycle.states import State
from session_server.protocol import PartyKind
from session_server.settings import ServerSettings
from tests.box_process import BoxProcess, box_process, rig_environment, write_config
from tests.conftest import RunningServer, serving
from tests.jack import Jack, jack_fixture  # noqa: F401  (provides ``jack``)
from tests.midi_rig import (  # noqa: F401  (``rooms_fixture`` provides ``rooms``)
    Room,
    Synth,
    played_until_heard,
    released,
    rooms_fixture,
    until,
)
from tests.pipewire import PipeWire, pipewire_fixture  # noqa: F401  (provides ``pipewire``)
from tests.running_clock import RunningClock
from tests.seed import seed_pair

LIVE_SECONDS = 40.0  # failsafes for a busy shared machine, never measurements
PHRASE_SECONDS = 5.0
# See tests/test_midi_bridge.py: the intervals are several times this and differ by more.
RHYTHM_TOLERANCE_MS = 100.0
PHRASES = 3
START_PAD = mido.Message("note_on", note=36, velocity=100)  # START's key in the default mapping


@pytest.fixture
def clocked_server(server_settings: ServerSettings) -> Iterator[RunningServer]:
    """The real server with a running clock from Tue 13:50, inside the seeded session's window
    (box processes keep time by the server's)."""
    with serving(server_settings, RunningClock(datetime(2026, 11, 24, 13, 50, tzinfo=UTC))) as up:
        yield up


async def phrase_heard(keys: Any, synth: Synth, notes: list[int], gaps_ms: list[int]) -> str:
    """Play a phrase into ``keys``; what was wrong with what ``synth`` heard ('' if nothing)."""
    played_at: list[float] = []
    for gap, note in zip(gaps_ms, notes, strict=True):
        await asyncio.sleep(gap / 1000)
        played_at.append(time.monotonic())
        keys.send(mido.Message("note_on", note=note, velocity=90))
    for note in notes:
        keys.send(mido.Message("note_off", note=note))
    with contextlib.suppress(AssertionError):  # what did arrive is judged below
        await until(lambda: len(synth.onsets(notes)) >= len(notes), "the phrase", PHRASE_SECONDS)
    onsets = synth.onsets(notes)
    if [note for _, note in onsets] != notes:  # each once, in order
        return f"heard {[note for _, note in onsets]} for {notes}"
    played = [(b - a) * 1000 for a, b in itertools.pairwise(played_at)]
    heard = [(b - a) * 1000 for (a, _), (b, _) in itertools.pairwise(onsets)]
    if any(abs(sent - got) > RHYTHM_TOLERANCE_MS for sent, got in zip(played, heard, strict=True)):
        return f"out of rhythm: played {played}, heard {heard}"
    return ""


async def in_rhythm(keys: Any, synth: Synth, gaps_ms: list[int], first_note: int) -> None:
    """A phrase played into ``keys`` comes out of ``synth`` in order and in rhythm.

    Up to ``PHRASES`` tries, each with notes of its own: the rig's JACK runs every client's
    Python callback inside its one process cycle, so on this shared machine a process left
    without a core for a moment stalls every port at once (no box has that: ALSA's sequencer
    reads on a thread of its own). A bridge that loses notes, reorders them or plays them on
    arrival fails every try."""
    problems: list[str] = []
    for attempt in range(PHRASES):
        notes = [first_note + attempt + step for step in (0, 4, 7, 12)]
        problem = await phrase_heard(keys, synth, notes, gaps_ms)
        if not problem:
            return
        problems.append(problem)
    raise AssertionError("; ".join(problems))


async def test_notes_cross_both_ways_in_rhythm_and_are_released_when_the_session_ends(
    pipewire: PipeWire,
    jack: Jack,
    clocked_server: RunningServer,
    rooms: tuple[Room, Room],
    tmp_path: Path,
) -> None:
    home_room, school_room = rooms
    pair = seed_pair(clocked_server.url, clocked_server.admin_headers)
    tag = uuid.uuid4().hex[:6]
    with (
        pipewire.box(f"midi_home_{tag}") as home_card,
        pipewire.box(f"midi_school_{tag}") as school_card,
    ):
        env = {
            **rig_environment(pipewire),  # after the cards: it names the ALSA files they made
            # The boxes' MIDI is this test's JACK server, and never a default one they start.
            "JACK_DEFAULT_SERVER": jack.name,
            "JACK_NO_START_SERVER": "1",
        }
        configs = {
            role: write_config(
                tmp_path / role.value,
                server_ws=clocked_server.ws_url,
                token=token,
                role=role,
                audio=card.settings,
                host_addresses=["127.0.0.1"],
                keyboard=True,
                midi=room.settings,
            )
            for role, token, card, room in (
                (PartyKind.CARE_HOME, pair.care_home_token, home_card, home_room),
                (PartyKind.SCHOOL, pair.school_device_token, school_card, school_room),
            )
        }
        with (
            box_process(
                configs[PartyKind.CARE_HOME],
                runtime_dir=tmp_path / PartyKind.CARE_HOME.value / "run",
                env=env,
            ) as home,
            box_process(
                configs[PartyKind.SCHOOL],
                runtime_dir=tmp_path / PartyKind.SCHOOL.value / "run",
                env=env,
            ) as school,
        ):
            await live(home, home_room, school)

            # The care home plays to the school, and the school back to the care home.
            await played_until_heard(
                home_room.keys, school_room.synth, mido.Message("control_change", value=1)
            )
            await in_rhythm(home_room.keys, school_room.synth, [0, 600, 300, 900], 60)
            await played_until_heard(
                school_room.keys, home_room.synth, mido.Message("control_change", value=2)
            )
            await in_rhythm(school_room.keys, home_room.synth, [0, 450, 900, 300], 48)

            # A note held in each room when the care home ends the session (START held).
            # (Played again until heard: see in_rhythm on this machine's stalls.)
            held_home = mido.Message("note_on", note=40, velocity=80)
            held_school = mido.Message("note_on", note=41, velocity=80)
            await played_until_heard(home_room.keys, school_room.synth, held_home)
            await played_until_heard(school_room.keys, home_room.synth, held_school)
            home_room.pad.send(START_PAD)  # and held: the care home leaves
            await until(
                lambda: released(school_room.synth, 40),
                "the school releases 40",
                synth=school_room.synth,
            )
            # Nobody let go of the keys: these note-offs (velocity 0, unlike the players' 64)
            # and all-notes-off come from the boxes themselves.
            await until(
                lambda: released(home_room.synth, 41),
                "the care home releases 41",
                synth=home_room.synth,
            )
            pad_notes = [
                m
                for m in school_room.synth.messages()
                if m.type in ("note_on", "note_off") and m.note == START_PAD.note
            ]
            assert not pad_notes, "the care home's pad was played across as notes"


async def live(home: BoxProcess, home_room: Room, school: BoxProcess) -> None:
    await home.until_state(State.SESSION_SOON, seconds=LIVE_SECONDS)
    await school.until_state(State.SESSION_SOON, seconds=LIVE_SECONDS)
    school.press("s")
    await school.until_state(State.WAITING, seconds=LIVE_SECONDS)
    home_room.pad.send(START_PAD)
    home_room.pad.send(mido.Message("note_off", note=START_PAD.note))
    await home.until_state(State.LIVE, seconds=LIVE_SECONDS)
    await school.until_state(State.LIVE, seconds=LIVE_SECONDS)
