"""The MIDI bridge between two real links: a real pair of aiortc peers on loopback (signalled
directly, no server) and real MIDI ports on a private JACK server (``tests/jack.py``).

What it protects: notes played into one box's instrument port come out of the other box's synth
port in order and in rhythm; the MIDI channel is its own ordered channel that bad data cannot
break; a link that ends releases what it left sounding; nothing is sent into a dead link.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import mido
import pytest
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import AudioStreamTrack

from device.midi.bridge import MidiBridge
from device.midi.wire import Timed, now_ms
from device.net.link import Link
from device.settings import MidiSettings
from session_server.protocol import (
    MIDI_DATA_CHANNEL_LABEL,
    Answer,
    MidiEvent,
    MidiEvents,
    Offer,
    Route,
)
from tests.jack import (  # noqa: F401  (fixtures: ``jack``, ``virtual_ports``)
    Jack,
    jack_fixture,
    virtual_ports_fixture,
)
from tests.net_support import LOOPBACK, eventually

ROOM = "s1@20261124T1400Z"
POLL = 0.05
# Inter-onset intervals must survive the trip within this. The machine is shared and busy (a
# thread that waits 80 ms for a core is no news here); the intervals played are three or more
# times larger and differ from each other by more than this, so a bridge that lost the rhythm
# (played on arrival in bunches, or out of order) fails.
RHYTHM_TOLERANCE_MS = 100.0


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


class DirectSignals:
    """Signalling between two links in one process: each offer or answer goes straight to the
    other link (a real ``SignalSender``; the session server is tested elsewhere)."""

    def __init__(self) -> None:
        self.peer: Link | None = None
        self.reports: list[bool] = []

    def send(self, message: Offer | Answer) -> bool:
        peer = self.peer
        assert peer is not None
        if isinstance(message, Offer):
            peer.accept_offer(message.sdp)
        else:
            peer.accept_answer(message.sdp)
        return True

    def report_link(self, room: str, up: bool, route: Route = Route.UNKNOWN) -> bool:
        self.reports.append(up)
        return True


class Heard:
    """A synth port's side: what arrived and when (``time.monotonic()``, as it was polled:
    ``tests.jack.Listener``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[float, mido.Message]] = []

    def __call__(self, message: mido.Message) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), message))

    def of_type(self, *types: str) -> list[tuple[float, mido.Message]]:
        with self.lock:
            return [(at, m) for at, m in self.messages if m.type in types]


@dataclass
class Side:
    link: Link
    midi: list[list[Timed]] = field(default_factory=list)
    changes: list[bool] = field(default_factory=list)


def _discard_audio(track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
    track.stop()  # these tests are about MIDI: the other side's audio is not played


def make_link(
    offer: bool, signals: DirectSignals, on_midi: Callable[[Side, list[Timed]], None]
) -> Side:
    side: Side

    link = Link(
        ROOM,
        offer=offer,
        ice_servers=[],  # loopback: rtc_configuration passes an explicit, empty list
        signalling=signals,
        microphone=AudioStreamTrack,
        on_remote_audio=_discard_audio,
        on_change=lambda changed: side.changes.append(changed.alive),
        on_reaction=lambda _link, _kind: None,
        settings=LOOPBACK,
        on_midi=lambda _link, played: on_midi(side, played),
    )
    side = Side(link)
    return side


@dataclass
class Pair:
    home: Side
    school: Side
    home_bridge: MidiBridge | None = None
    school_bridge: MidiBridge | None = None


def _to_bridge(pair: Pair, name: str) -> Callable[[Side, list[Timed]], None]:
    def deliver(side: Side, played: list[Timed]) -> None:
        side.midi.append(played)
        bridge = getattr(pair, name)
        if bridge is not None:
            bridge.received(played)

    return deliver


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """Two live links: the care home offers, the school answers."""
    home_signals, school_signals = DirectSignals(), DirectSignals()
    made = Pair.__new__(Pair)
    made.home_bridge = made.school_bridge = None
    made.home = make_link(True, home_signals, _to_bridge(made, "home_bridge"))
    made.school = make_link(False, school_signals, _to_bridge(made, "school_bridge"))
    home_signals.peer, school_signals.peer = made.school.link, made.home.link
    made.school.link.start()
    made.home.link.start()
    try:
        await eventually(
            lambda: made.home.link.alive and made.school.link.alive, "both links alive"
        )
        await eventually(
            lambda: all(
                s.link.midi_channel is not None and s.link.midi_channel.readyState == "open"
                for s in (made.home, made.school)
            ),
            "both MIDI channels open",
        )
        yield made
    finally:
        for bridge in (made.home_bridge, made.school_bridge):
            if bridge is not None:
                await bridge.aclose()
        await made.home.link.close()
        await made.school.link.close()


async def _played_until_heard(keys: Any, probe: mido.Message, heard: Heard) -> None:
    """Play ``probe`` every so often until the synth hears it (a bounded wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while probe not in [m for _, m in heard.messages]:
        assert loop.time() < deadline, "the probe never reached the synth"
        keys.send(probe)
        await asyncio.sleep(0.2)


def bridge(settings: MidiSettings, link: Link) -> MidiBridge:
    made = MidiBridge(settings, send=link.send_midi, poll_seconds=POLL)
    made.start()
    return made


async def test_the_midi_channel_is_ordered_and_reliable_and_offered_beside_the_twm_channel(
    pair: Pair,
) -> None:
    for side in (pair.home, pair.school):
        channel = side.link.midi_channel
        assert channel is not None
        assert channel.label == MIDI_DATA_CHANNEL_LABEL
        assert channel.ordered
        assert channel.maxRetransmits is None and channel.maxPacketLifeTime is None
    batches = [
        MidiEvents(events=[MidiEvent(t_ms=float(i), data=[0x90, 60 + i % 12, 100])])
        for i in range(200)
    ]
    for batch in batches:
        assert pair.home.link.send_midi(batch)
    await eventually(lambda: len(pair.school.midi) == 200, "every batch arrives")
    assert [played[0].t_ms for played in pair.school.midi] == [float(i) for i in range(200)]


async def test_bad_midi_from_the_peer_is_counted_and_the_next_batch_still_arrives(
    pair: Pair,
) -> None:
    channel = pair.home.link.midi_channel
    assert channel is not None
    channel.send("not json")
    channel.send('{"type": "midi", "events": [{"t_ms": 1, "data": [240, 1, 2]}]}')  # a sysex
    channel.send('{"type": "heartbeat", "seq": 1}')  # the right shape on the wrong channel
    assert pair.home.link.send_midi(MidiEvents(events=[MidiEvent(t_ms=5.0, data=[0x80, 60, 0])]))
    await eventually(lambda: pair.school.midi, "the good batch after the bad ones")
    assert pair.school.link.bad_midi == 3
    assert pair.school.link.alive  # bad MIDI never costs the link
    assert [t.message for t in pair.school.midi[0]] == [
        mido.Message("note_off", note=60, velocity=0)
    ]


async def test_notes_played_into_one_box_come_out_of_the_other_in_order_and_in_rhythm(
    pair: Pair, jack: Jack, virtual_ports: list[Any]
) -> None:
    keys_name, synth_name = unique("HomeKeys"), unique("SchoolSynth")
    keys = jack.backend.open_output(keys_name, virtual=True, client_name=keys_name)
    virtual_ports.append(keys)
    heard = Heard()
    synth = jack.listen(synth_name, heard)
    virtual_ports.append(synth)
    pair.home_bridge = bridge(MidiSettings(inputs=[keys_name], backend="jack"), pair.home.link)
    pair.school_bridge = bridge(
        MidiSettings(outputs=[synth_name], backend="jack", playout_ms=120), pair.school.link
    )
    home_ports, school_ports = pair.home_bridge.ports, pair.school_bridge.ports
    assert home_ports is not None and school_ports is not None
    await eventually(lambda: home_ports.state.inputs, "the care home's keyboard open")
    await eventually(lambda: school_ports.state.outputs, "the school's synth open")
    assert pair.school_bridge.instrument is school_ports
    # JACK makes a new connection real at its next cycle: until a probe has gone all the way,
    # the keyboard is not yet wired to the care home's box (a first note could be lost here).
    probe = mido.Message("control_change", control=7, value=100)
    await _played_until_heard(keys, probe, heard)
    assert pair.home_bridge.sent >= 1
    sent_before = pair.home_bridge.sent

    gaps_ms = [0, 600, 300, 900, 450]  # a rhythm, not a metronome
    notes = [60, 64, 67, 72, 76]
    for gap, note in zip(gaps_ms, notes, strict=True):
        await asyncio.sleep(gap / 1000)
        keys.send(mido.Message("note_on", note=note, velocity=90))
    keys.send(mido.Message("note_off", note=76))
    await eventually(lambda: len(heard.of_type("note_on")) >= 5, "five notes at the school")
    await eventually(lambda: heard.of_type("note_off"), "the last note's note-off")

    onsets = heard.of_type("note_on")
    assert [m.note for _, m in onsets] == notes
    # The rhythm as the care home's box stamped it (its clock, the wire's t_ms), against the
    # rhythm the school's synth heard: the link and the playout must keep it.
    stamped = [t.t_ms for batch in pair.school.midi for t in batch if t.message.type == "note_on"]
    assert len(stamped) == 5
    sent_ioi = [b - a for a, b in itertools.pairwise(stamped)]
    heard_ioi = [(b - a) * 1000 for (a, _), (b, _) in itertools.pairwise(onsets)]
    for sent, got in zip(sent_ioi, heard_ioi, strict=True):
        assert abs(sent - got) <= RHYTHM_TOLERANCE_MS, (sent_ioi, heard_ioi)
    assert pair.home_bridge.sent - sent_before == 6
    # What the school plays is watched: the last note was let go, the others still ring.
    assert pair.school_bridge.sounding == {(0, 60), (0, 64), (0, 67), (0, 72)}


async def test_a_link_that_ends_releases_the_notes_it_left_sounding(
    pair: Pair, jack: Jack, virtual_ports: list[Any]
) -> None:
    synth_name = unique("SchoolSynth")
    heard = Heard()
    synth = jack.listen(synth_name, heard)
    virtual_ports.append(synth)
    pair.school_bridge = bridge(
        MidiSettings(outputs=[synth_name], backend="jack"), pair.school.link
    )
    pair.home_bridge = MidiBridge(MidiSettings(), send=pair.home.link.send_midi)
    pair.home_bridge.start()
    school_ports = pair.school_bridge.ports
    assert school_ports is not None
    await eventually(lambda: school_ports.state.outputs, "the school's synth open")

    # Played on the care home's side (no port: straight into the bridge, as its ports would).
    played_at = now_ms()
    pair.home_bridge.played_here(
        mido.Message("control_change", channel=2, control=64, value=127), played_at
    )
    pair.home_bridge.played_here(
        mido.Message("note_on", channel=2, note=50, velocity=70), played_at
    )
    await eventually(lambda: heard.of_type("note_on"), "the held note sounds at the school")
    assert pair.school_bridge.sounding == {(2, 50)}

    await pair.home.link.close()  # the care home goes; the note-off never will come
    await eventually(lambda: not pair.school.link.alive, "the school notices the link is gone")
    pair.school_bridge.link_ended()  # what the link manager says when its link goes down
    await eventually(lambda: heard.of_type("note_off"), "the note released")
    after = [m for _, m in heard.messages][2:]
    assert mido.Message("note_off", channel=2, note=50, velocity=0) in after
    assert mido.Message("control_change", channel=2, control=64, value=0) in after
    await eventually(
        lambda: (
            mido.Message("control_change", channel=2, control=123, value=0)
            in [m for _, m in heard.messages]
        ),
        "all notes off",
    )
    assert pair.school_bridge.sounding == frozenset()


async def test_notes_played_with_no_live_link_are_dropped_not_kept(pair: Pair) -> None:
    await pair.school.link.close()
    pair.home_bridge = MidiBridge(MidiSettings(), send=pair.home.link.send_midi)
    pair.home_bridge.start()
    await eventually(
        lambda: (
            pair.home.link.midi_channel is not None
            and pair.home.link.midi_channel.readyState != "open"
        ),
        "the care home's MIDI channel closes",
    )
    for note in range(60, 64):
        pair.home_bridge.played_here(mido.Message("note_on", note=note, velocity=80), now_ms())
    await eventually(lambda: pair.home_bridge.unsent_dropped == 4, "four notes dropped")
    assert pair.home_bridge.sent == 0
