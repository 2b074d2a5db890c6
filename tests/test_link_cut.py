"""The link is cut during a live session, and the boxes rebuild it by themselves.

The care-home box runs as its own process (``twm-device run``, as systemd runs it) inside a
network namespace whose only way out is a veth pair; the server listens on the host's end of it.
The school's box runs in this process on the host. Each box has its own virtual sound card on
the PipeWire rig: a tone plays in the care home's room, and an ear listens to the school's
speaker. The veth is taken down for 10 s mid-session (a care home's router dropping) and put
back; nobody presses anything. Each room also has a MIDI instrument and synth (on the rig's JACK
server) and holds a note across the link when the cut comes.

What it proves: both boxes notice (reconnecting: the school's state in this process, the care
home's in the status file it writes), the tone stops reaching the school, each box releases the
note the other side left sounding on its synth (that note-off will never come), and once the link
is back both boxes are live again by themselves and the tone comes out of the school's speaker
again.
The care home's status file tells the truth throughout (its state, ON-AIR off while the link is
down, the same room, the same process), and so does ``twm-device status`` run beside it.

Both boxes' cards are real PipeWire cards (no fake): each box opens its own card in its own
process (PortAudio in this process only ever opens the school's).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mido
import pytest

from device.audio.soundcard import sounddevice_card
from device.lifecycle.states import State
from device.settings import load
from session_server.protocol import PartyKind
from session_server.settings import ServerSettings
from tests.box_process import (
    BoxProcess,
    box_process,
    rig_environment,
    technician_status,
    write_config,
)
from tests.box_support import RunningBox, running_box, until
from tests.conftest import RunningServer, serving
from tests.jack import Jack, jack_fixture  # noqa: F401  (provides ``jack``)
from tests.midi_rig import (  # noqa: F401  (``rooms_fixture`` provides ``rooms``)
    Room,
    played_until_heard,
    released,
    rooms_fixture,
)
from tests.netns import Namespace, namespace
from tests.pipewire import PipeWire, pipewire_fixture  # noqa: F401
from tests.room_sound import Ear, ear_on, tone_in_room
from tests.running_clock import RunningClock
from tests.seed import seed_pair

CUT_SECONDS = 10.0
# Failsafes only, never measurements: a rebuild may wait out a connection attempt that was
# started while the link was down (link.connect_seconds) and the lifecycle's retry after it.
NOTICE_SECONDS = 30.0
RECOVER_SECONDS = 90.0
# The box rewrites its status every 2 s: a status older than this is stale, however busy the
# machine (a sanity bound against a wrong clock, not a measurement).
STALE_SECONDS = 60


@pytest.fixture
def ns() -> Iterator[Namespace]:
    with namespace() as made:
        yield made


@pytest.fixture
def veth_server(server_settings: ServerSettings, ns: Namespace) -> Iterator[RunningServer]:
    """The real server on the host's end of the veth: the namespaced box reaches it only that way.
    Its clock runs (from Tue 13:50, inside the seeded session's window): see running_clock."""
    clock = RunningClock(datetime(2026, 11, 24, 13, 50, tzinfo=UTC))
    with serving(server_settings, clock, host=ns.host_ip) as running:
        yield running


async def live_and_hearing(home: BoxProcess, school: RunningBox, ear: Ear, seconds: float) -> None:
    await until(lambda: school.state is State.LIVE, "the school box live", seconds)
    await home.until_state(State.LIVE, seconds=seconds)
    await until(ear.flowing, "the care home's tone coming out of the school's speaker", seconds)


async def test_a_cut_link_is_rebuilt_by_the_boxes_themselves(
    pipewire: PipeWire,
    ns: Namespace,
    veth_server: RunningServer,
    rooms: tuple[Room, Room],
    jack: Jack,
    tmp_path: Path,
) -> None:
    home_room, school_room = rooms
    pair = seed_pair(veth_server.url, veth_server.admin_headers)
    tag = secrets.token_hex(3)
    with (
        pipewire.box(f"cut_home_{tag}") as home_card,
        pipewire.box(f"cut_school_{tag}") as school_card,
        tone_in_room(pipewire, home_card.room),
        ear_on(pipewire, school_card.speaker) as ear,
    ):
        home_config = write_config(
            tmp_path / "home",
            server_ws=veth_server.ws_url,
            token=pair.care_home_token,
            role=PartyKind.CARE_HOME,
            audio=home_card.settings,
            host_addresses=[ns.ns_ip],
            allow_insecure=True,  # ws:// to another host (the veth), a test network
            keyboard=True,
            midi=home_room.settings,
        )
        school_config = write_config(
            tmp_path / "school",
            server_ws=veth_server.ws_url,
            token=pair.school_device_token,
            role=PartyKind.SCHOOL,
            audio=school_card.settings,
            host_addresses=[ns.host_ip],
            allow_insecure=True,
            midi=school_room.settings,  # this process's JACK is the rig's (tests/jack.py)
        )
        with box_process(
            home_config,
            runtime_dir=tmp_path / "home" / "run",
            prefix=ns.exec(),
            # The rig's sockets (PipeWire's, JACK's) are files: reachable from the namespace.
            env={
                **rig_environment(pipewire),
                "JACK_DEFAULT_SERVER": jack.name,
                "JACK_NO_START_SERVER": "1",
            },
        ) as home:
            async with running_box(load(school_config), sounddevice_card) as school:
                await home.until_state(State.SESSION_SOON)
                await school.until_state(State.SESSION_SOON)
                assert ear.silent(), "nothing of the care home is heard before the session"

                school.press("start")
                await school.until_state(State.WAITING)
                home.press("s")  # START on the care-home box's keyboard
                await live_and_hearing(home, school, ear, seconds=20)
                live = home.status
                assert live is not None and live.on_air and live.room is not None
                assert live.pid == home.process.pid  # this box wrote it (ip netns exec execs)
                # A note held in each room, heard in the other, when the cut comes.
                await played_until_heard(
                    home_room.keys, school_room.synth, mido.Message("note_on", note=40)
                )
                await played_until_heard(
                    school_room.keys, home_room.synth, mido.Message("note_on", note=41)
                )

                ns.cut()
                loop = asyncio.get_running_loop()
                cut_at = loop.time()
                try:
                    await until(
                        lambda: school.state is State.RECONNECTING,
                        "the school box to notice the link is gone",
                        NOTICE_SECONDS,
                    )
                    await home.until_state(State.RECONNECTING, seconds=NOTICE_SECONDS)
                    await until(ear.silent, "the tone to stop reaching the school", NOTICE_SECONDS)
                    # Released by each box itself (note-off, velocity 0, then all notes off).
                    await until(
                        lambda: released(school_room.synth, 40),
                        "the school box to release the care home's note",
                        NOTICE_SECONDS,
                    )
                    await until(
                        lambda: released(home_room.synth, 41),
                        "the care-home box to release the school's note",
                        NOTICE_SECONDS,
                    )
                    await asyncio.sleep(max(0.0, cut_at + CUT_SECONDS - loop.time()))
                    assert school.state is State.RECONNECTING
                    cut = home.status
                    assert cut is not None and cut.state is State.RECONNECTING
                    assert not cut.on_air  # ON-AIR is never lit while nothing is sent
                    assert cut.room == live.room
                finally:
                    ns.restore()

                # Nobody presses anything: both boxes rebuild the link and the tone flows again.
                await live_and_hearing(home, school, ear, seconds=RECOVER_SECONDS)
                back = home.status
                assert back is not None and back.on_air and back.room == live.room
                assert back.pid == live.pid and home.running()  # the same box, never restarted

                # The technician's view agrees (in the namespace, as on the box itself).
                report = await technician_status(
                    home_config, prefix=ns.exec(), env=rig_environment(pipewire)
                )
                box_line = re.search(r"Box +live \(updated (\d+) s ago", report)
                assert box_line is not None, report
                assert int(box_line.group(1)) < STALE_SECONDS, report
                assert re.search(r"Server +reachable", report), report
                assert re.search(rf"input +{home_card.mic}", report), report
