"""MIDI on the school page (session_server/static/midi.js) in Debian's headless Chromium: an aiortc
peer playing the care-home box sends MidiEvents on the "twm-midi" data channel, and the page's
synth plays them, refuses malformed ones and releases every voice when the channel or the link
goes. Whichever side offers, the channel is made by the offerer right after "twm".

The page's validation and timing are also checked against the Python side itself: the same
batches through protocol.parse_peer_message and through midi.js, the same arrivals through
device.midi.playout.Playout and through midi.js's Playout (both on a fake clock).
"""

from __future__ import annotations

import json
import time
from typing import Any

import mido
import pytest
from aiortc import RTCDataChannel, RTCPeerConnection
from playwright.async_api import BrowserContext, Page, expect
from pydantic import ValidationError

from device.lifecycle.actions import OpenLink
from device.lifecycle.events import JoinAccepted, LinkUp, PeerJoined, ServerUp
from device.midi.playout import Playout
from device.midi.sounding import SoundingNotes
from session_server.protocol import (
    MAX_MIDI_EVENTS,
    MIDI_DATA_CHANNEL_LABEL,
    MidiEvent,
    MidiEvents,
    PartyKind,
    encode,
    parse_peer_message,
    room_id,
)
from tests.conftest import RunningServer
from tests.net_support import start_box
from tests.seed import seed_pair
from tests.standin_device import StandinDevice
from tests.test_school_page_e2e import STARTS_AT, WAIT_MS, eventually, open_page, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_only")]

NOTE_ON = 0x90
NOTE_OFF = 0x80


class MidiStandin(StandinDevice):
    """The stand-in box with the MIDI channel too: made right after "twm" when it offers, taken
    in "datachannel" when it answers (ISSUE6's agreement), and what the page sends kept."""

    def __init__(self, ws_url: str, token: str) -> None:
        super().__init__(ws_url, token)
        self.midi: RTCDataChannel | None = None
        self.midi_heard: list[MidiEvents] = []

    def _new_peer(self) -> RTCPeerConnection:
        pc = super()._new_peer()
        self.midi = None

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label == MIDI_DATA_CHANNEL_LABEL:
                self._use_midi(channel)

        return pc

    def _more_channels(self, pc: RTCPeerConnection) -> None:
        # Right after "twm", as the box does.
        self._use_midi(pc.createDataChannel(MIDI_DATA_CHANNEL_LABEL, ordered=True))

    def _use_midi(self, channel: RTCDataChannel) -> None:
        self.midi = channel

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            message = parse_peer_message(data)
            if isinstance(message, MidiEvents):
                self.midi_heard.append(message)

    def send_midi_text(self, text: str) -> None:
        if self.midi is None or self.midi.readyState != "open":
            raise RuntimeError("the MIDI channel is not open")
        self.midi.send(text)

    def play(self, *messages: list[int]) -> None:
        """One batch, stamped with this side's monotonic clock as the box stamps it."""
        now = time.monotonic() * 1000
        events = [MidiEvent(t_ms=now, data=data) for data in messages]
        self.send_midi_text(encode(MidiEvents(events=events)))


async def midi_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] | None = await page.evaluate("window.twm.midi()")
    assert state is not None, "the page has no MIDI link outside a call"
    return state


async def until_midi(page: Page, what: str, **expected: Any) -> dict[str, Any]:
    async def matches() -> dict[str, Any] | None:
        state = await midi_state(page)
        return state if all(state[k] == v for k, v in expected.items()) else None

    found: dict[str, Any] = await eventually(matches, what)
    return found


async def live_call(
    server: RunningServer, browser: BrowserContext, problems: list[str], *, page_first: bool
) -> tuple[Page, MidiStandin]:
    pair = seed_pair(server.url, server.admin_headers)
    room = room_id(pair.session_id, STARTS_AT)
    device = MidiStandin(server.ws_url, pair.care_home_token)
    await device.connect()
    if not page_first:
        assert not (await device.join(room)).peer_present  # the page offers
    page = await open_page(browser, server, problems)
    await sign_in(page, pair.access_code)
    await page.locator(f'li.session[data-room="{room}"]').get_by_role("button", name="Join").click()
    if page_first:
        await expect(page.locator("#call-state-words")).to_contain_text("Waiting", timeout=WAIT_MS)
        assert (await device.join(room)).peer_present  # the box offers, the page answers
    await expect(page.locator("#call-state-words")).to_have_text("Live", timeout=WAIT_MS)
    await eventually(
        lambda: device.midi is not None and device.midi.readyState == "open",
        "the box's MIDI channel",
    )
    await until_midi(page, "the page's MIDI channel", channelOpen=True)
    return page, device


MALFORMED = [
    "not json",
    '{"type":"midi","events":[]}',  # no events
    '{"type":"midi","events":[{"t_ms":1,"data":[240,1,247]}]}',  # sysex: not channel voice
    '{"type":"midi","events":[{"t_ms":1,"data":[144,128,100]}]}',  # data byte above 127
    '{"type":"midi","events":[{"t_ms":1,"data":[192,5,5]}]}',  # program change takes one byte
    '{"type":"midi","events":[{"t_ms":-1,"data":[144,72,100]}]}',  # time before zero
    '{"type":"midi","events":[{"t_ms":1,"data":[144,72,100],"x":1}]}',  # unknown field
    # A good note beside a bad one: the whole batch is refused, so note 72 never sounds.
    '{"type":"midi","events":[{"t_ms":1,"data":[144,72,100]},{"t_ms":2,"data":[248,0]}]}',
    json.dumps({"type": "midi", "events": [{"t_ms": 1, "data": [144, 72, 1]}] * 257}),
]


async def test_box_notes_play_on_the_page_synth_bad_ones_are_refused_and_closing_releases_all(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    page, device = await live_call(server, browser, problems, page_first=False)
    try:
        await expect(page.locator("#midi-instrument")).to_have_text("on-screen synth")
        await expect(page.locator("#midi-notes")).to_have_text("0 notes played")
        # No MIDI allowed in this browser yet: the teacher is offered it, not prompted.
        await expect(page.get_by_role("button", name="Use a MIDI instrument")).to_be_visible()

        device.play([NOTE_ON, 60, 100], [NOTE_ON, 64, 90], [NOTE_ON, 67, 80])
        await expect(page.locator("#midi-notes")).to_have_text("3 notes played", timeout=WAIT_MS)
        state = await until_midi(page, "three voices", voices=3, sounding=3)
        # Real sound: the synth's own AnalyserNode sees the oscillators.
        await eventually(lambda: _louder_than(page, 0.01), "the synth's output to be heard")

        for text in MALFORMED:
            device.send_midi_text(text)
        await until_midi(page, "every malformed batch refused", rejected=len(MALFORMED))
        state = await midi_state(page)
        assert (state["notesPlayed"], state["voices"]) == (3, 3)

        # A note-off, and a note-on with velocity 0 (also a note-off), release their voices.
        device.play([NOTE_OFF, 64, 0], [NOTE_ON, 60, 0])
        await until_midi(page, "two notes released", voices=1, sounding=1)

        # A held pedal keeps a released note sounding, as on a piano.
        device.play([0xB0, 64, 127], [NOTE_ON, 72, 100], [NOTE_OFF, 72, 0])
        await until_midi(page, "the pedalled note held", voices=2, notesPlayed=4)

        # The box closes the MIDI channel with two notes (one pedalled) still down.
        assert device.midi is not None
        device.midi.close()
        state = await until_midi(
            page, "every voice released", voices=0, sounding=0, channelOpen=False
        )
        assert state["notesPlayed"] == 4
        await eventually(lambda: _silent(page), "the synth to fall silent")
        await expect(page.locator("#midi-notes")).to_have_text("4 notes played")
        assert device.problems == []
        assert problems == []
    finally:
        await device.close()


async def test_the_answering_page_takes_the_midi_channel_and_a_lost_link_releases_held_notes(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    page, device = await live_call(server, browser, problems, page_first=True)
    try:
        # A note and a controller in one batch, then a note alone: both play, in order.
        device.play([0xB0, 7, 100], [NOTE_ON, 48, 127])
        device.play([NOTE_ON, 55, 64])
        await until_midi(page, "two held notes", voices=2, notesPlayed=2)

        # The box's network fails with both keys down: the page hears nothing more from it.
        await device.lose_link()
        await until_midi(page, "the held notes released", voices=0, sounding=0)
        await eventually(lambda: _silent(page), "the synth to fall silent")
        assert problems == []
    finally:
        await device.close()


async def test_the_class_instrument_is_sent_and_a_classroom_midi_output_plays_the_care_home(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    """Web MIDI needs a real instrument, which this machine has not got: the browser's
    requestMIDIAccess is given one keyboard (an input and an output) made of page objects, so
    the real MidiLink, the real channel and the real box see what a plugged-in keyboard does."""
    await browser.add_init_script(FAKE_KEYBOARD)
    page, device = await live_call(server, browser, problems, page_first=False)
    try:
        # The browser has not been allowed MIDI yet: the page waits for the teacher to ask, so
        # its prompt never comes by surprise.
        await expect(page.locator("#midi-instrument")).to_have_text("on-screen synth")
        connect = page.get_by_role("button", name="Use a MIDI instrument")
        await connect.click(timeout=WAIT_MS)
        await expect(connect).to_be_hidden()
        await expect(page.locator("#midi-instrument")).to_have_text(
            "Class Keyboard", timeout=WAIT_MS
        )
        await expect(page.locator("#midi-inputs")).to_have_text("Class Keyboard")

        # A chord and a clock tick (never sent: not channel voice), in one task.
        await page.evaluate(
            """() => {
              const key = window.classKeyboard;
              key.play([0x90, 60, 100], 1000.5);
              key.play([0x90, 64, 100], 1001);
              key.play([0xf8], 1002);
            }"""
        )
        # Released later, in a task of its own (a real keyboard's note-off comes in its own).
        await page.evaluate("window.classKeyboard.play([0x80, 60, 0], 1200)")
        await eventually(
            lambda: sum(len(batch.events) for batch in device.midi_heard) == 3,
            "the class's three messages at the box",
        )
        events = [event for batch in device.midi_heard for event in batch.events]
        assert [event.data for event in events] == [[0x90, 60, 100], [0x90, 64, 100], [0x80, 60, 0]]
        assert [event.t_ms for event in events] == [1000.5, 1001, 1200]
        # The chord, played in one task, travelled as one batch.
        assert [len(batch.events) for batch in device.midi_heard] == [2, 1]
        await expect(page.locator("#midi-inputs")).to_have_text("Class Keyboard · 2 notes sent")

        # The care home's notes go to the classroom's instrument, not the synth.
        device.play([NOTE_ON, 62, 90])
        await eventually(
            lambda: page.evaluate(
                "window.classKeyboard.sent.some((m) => m[0] === 0x90 && m[1] === 62)"
            ),
            "the care home's note at the classroom keyboard",
        )
        state = await midi_state(page)
        assert state["voices"] == 0 and state["notesPlayed"] == 1

        # Leave: the note still down on the classroom keyboard is released there.
        await page.click("#leave")
        sent: list[list[int]] = await eventually(
            lambda: page.evaluate(
                "window.classKeyboard.sent.some((m) => m[0] === 0x80 && m[1] === 62)"
                " && window.classKeyboard.sent"
            ),
            "a note-off for the held note",
        )
        assert [0xB0, 123, 0] in sent  # all notes off on the channel used
        assert problems == []
    finally:
        await device.close()


async def test_the_real_boxs_link_and_the_page_trade_notes_on_the_midi_channel(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    """The box's own LinkManager (device/net), not a stand-in: the page offers, the box takes
    "twm-midi" in "datachannel"; its notes play on the page's synth, and the class keyboard's
    reach the box; when the box's link closes, the page releases what was sounding."""
    await browser.add_init_script(FAKE_KEYBOARD.replace("Class Keyboard", "Class Pad"))
    # Allowed before (a school that uses its pad every week): the page opens it while joining.
    # (Chromium's grant rejects every permission not listed: the microphone is listed too.)
    await browser.grant_permissions(["midi", "microphone"])
    pair = seed_pair(server.url, server.admin_headers)
    room = room_id(pair.session_id, STARTS_AT)
    box = start_box(server.ws_url, pair.care_home_token, PartyKind.CARE_HOME)
    try:
        await box.log.next(ServerUp)
        box.client.join(room)
        assert await box.log.next(JoinAccepted) == JoinAccepted(room, peer_present=False)
        page = await open_page(browser, server, problems)
        await sign_in(page, pair.access_code)
        join = page.locator(f'li.session[data-room="{room}"]').get_by_role("button", name="Join")
        await join.click()
        await box.log.next(PeerJoined)
        box.links.perform(OpenLink(room, offer=False))  # what the lifecycle does on PeerJoined
        await box.log.next(LinkUp)
        link = box.links.link
        assert link is not None
        await eventually(
            lambda: link.midi_channel is not None and link.midi_channel.readyState == "open",
            "the box to take the page's MIDI channel",
        )
        await until_midi(page, "the page's MIDI channel", channelOpen=True)
        await expect(page.locator("#midi-instrument")).to_have_text("Class Pad", timeout=WAIT_MS)
        await expect(page.get_by_role("button", name="Use a MIDI instrument")).to_be_hidden()

        now = time.monotonic() * 1000
        chord = [[NOTE_ON, 57, 100], [NOTE_ON, 61, 100], [NOTE_ON, 64, 100]]
        batch = MidiEvents(events=[MidiEvent(t_ms=now, data=data) for data in chord])
        assert link.send_midi(batch)
        # The pad's output is the page's instrument here: the box's notes reach it.
        await eventually(
            lambda: page.evaluate(
                "window.classKeyboard.sent.filter((m) => m[0] === 0x90).length === 3"
            ),
            "the box's chord at the classroom's instrument",
        )
        await until_midi(page, "three notes counted", notesPlayed=3)

        await page.evaluate("window.classKeyboard.play([0x99, 36, 110], performance.now())")
        await eventually(lambda: link.midi_batches_heard == 1, "the pad's hit at the box")
        assert link.bad_midi == 0

        await link.close()
        released: list[list[int]] = await eventually(
            lambda: page.evaluate(
                "window.classKeyboard.sent.filter((m) => m[0] === 0x80).length === 3"
                " && window.classKeyboard.sent"
            ),
            "the chord released at the classroom's instrument",
        )
        assert [0xB0, 64, 0] in released and [0xB0, 123, 0] in released
        assert (await midi_state(page))["sounding"] == 0
        assert problems == []
    finally:
        await box.close()


# A stand-in for the browser's Web MIDI: one keyboard with an input and an output, the same
# objects and events Chromium gives for a real one (MIDIAccess, MIDIInput's "midimessage" with
# data and timeStamp, MIDIOutput's send).
FAKE_KEYBOARD = """
(() => {
  class Port extends EventTarget {
    constructor(type) {
      super();
      Object.assign(this, { type, id: type, name: "Class Keyboard", state: "connected" });
    }
  }
  const input = new Port("input");
  const output = new Port("output");
  output.sent = [];
  output.send = (data) => output.sent.push(Array.from(data));
  input.play = (data, timeStamp) => {
    const event = new Event("midimessage");
    Object.defineProperty(event, "data", { value: new Uint8Array(data) });
    Object.defineProperty(event, "timeStamp", { value: timeStamp });
    input.dispatchEvent(event);
  };
  const access = new EventTarget();
  access.inputs = new Map([["input", input]]);
  access.outputs = new Map([["output", output]]);
  navigator.requestMIDIAccess = async () => access;
  window.classKeyboard = { play: input.play, get sent() { return output.sent; } };
})();
"""


async def _louder_than(page: Page, level: float) -> bool:
    return bool((await midi_state(page))["peak"] > level)


async def _silent(page: Page) -> bool:
    return bool((await midi_state(page))["peak"] == 0)


# --- the page's validation and timing, against the Python side ------------------------------

BATCHES: list[Any] = [
    {"type": "midi", "events": [{"t_ms": 0, "data": [0x90, 60, 100]}]},
    {
        "type": "midi",
        "events": [{"t_ms": 12.5, "data": [0xC3, 5]}, {"t_ms": 13, "data": [0xE0, 0, 64]}],
    },
    {"type": "midi", "events": [{"t_ms": 2**53, "data": [0xD1, 127]}]},
    {
        "type": "midi",
        "events": [{"t_ms": 1, "data": [0xA0, 60, 1]}, {"t_ms": 1, "data": [0xB0, 64, 0]}],
    },
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x80, 0, 0]}] * MAX_MIDI_EVENTS},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x80, 0, 0]}] * (MAX_MIDI_EVENTS + 1)},
    {"type": "midi", "events": []},
    {"type": "midi"},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 100]}], "extra": 1},
    {"type": "heartbeat", "seq": 1},
    {"type": "midi", "events": [{"t_ms": 2**53 + 4096, "data": [0x90, 60, 100]}]},
    {"type": "midi", "events": [{"t_ms": -0.5, "data": [0x90, 60, 100]}]},
    {"type": "midi", "events": [{"data": [0x90, 60, 100]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 100, 1]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0xC0, 5, 5]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0xF0, 1, 0xF7]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0xF8, 0]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x3C, 100, 1]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 128]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 256]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, -1, 100]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60.5, 100]}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 100], "note": 1}]},
    {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, 60, 100]}, {"t_ms": 1, "data": [0xFF]}]},
    [{"t_ms": 1, "data": [0x90, 60, 100]}],
]


def _python_accepts(text: str) -> bool:
    try:
        return isinstance(parse_peer_message(text), MidiEvents)
    except ValidationError:
        return False


async def test_the_pages_validation_agrees_with_the_protocol_model(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    page = await open_page(browser, server, problems)
    texts = [json.dumps(batch) for batch in BATCHES] + ["", "{", "null", '"midi"']
    verdicts: list[bool] = await page.evaluate(
        """async (texts) => {
          const { parseMidiEvents } = await import("/midi.js");
          return texts.map((text) => parseMidiEvents(text) !== null);
        }""",
        texts,
    )
    assert verdicts == [_python_accepts(text) for text in texts]
    assert any(verdicts) and not all(verdicts)
    # Where pydantic's lax mode coerces a string or a boolean into a number, the page refuses:
    # no honest sender writes them, and a guessed note is worse than a missing one.
    coerced = [
        {"type": "midi", "events": [{"t_ms": "1", "data": [0x90, 60, 100]}]},
        {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, "60", 100]}]},
        {"type": "midi", "events": [{"t_ms": 1, "data": [0x90, True, 100]}]},
    ]
    refused: list[bool] = await page.evaluate(
        """async (texts) => {
          const { parseMidiEvents } = await import("/midi.js");
          return texts.map((text) => parseMidiEvents(text) === null);
        }""",
        [json.dumps(batch) for batch in coerced],
    )
    assert refused == [True, True, True]
    assert problems == []


# Arrivals: (receiver's clock when it arrives, sender's t_ms, message bytes). Packets bunch,
# one is slow, the offset shrinks mid-stream (a faster route), then an outage makes a note-on
# and its note-off far too late, and the minimum of an old window is forgotten.
ARRIVALS: list[tuple[float, float, list[int]]] = [
    (1000.0, 0.0, [0x90, 60, 100]),
    (1030.0, 10.0, [0x80, 60, 0]),  # 20 ms slower than the first trip: held less
    (1030.0, 20.0, [0x90, 62, 100]),  # bunched with the one before
    (1030.0, 25.0, [0xB0, 64, 127]),
    (1034.0, 30.0, [0x90, 64, 100]),  # a faster trip: the offset shrinks, order is still kept
    (1500.0, 40.0, [0x90, 65, 100]),  # 456 ms late: dropped
    (1500.0, 41.0, [0x80, 65, 0]),  # late too, but a note-off always plays
    (7000.0, 6000.0, [0x90, 67, 100]),
    (12500.0, 11510.0, [0x90, 69, 100]),  # two windows on: the old minimum no longer counts
]


def _python_schedule() -> tuple[list[tuple[float, list[list[int]]]], int, int]:
    clock = [0.0]
    playout = Playout(delay_ms=20.0, clock=lambda: clock[0])
    played: list[tuple[float, list[list[int]]]] = []

    def drain(until: float) -> None:
        while (due := playout.next_due_ms()) is not None and due <= until:
            clock[0] = max(clock[0], due)
            played.append((clock[0], [list(m.bytes()) for m in playout.due()]))
        clock[0] = until

    for arrival, t_ms, data in ARRIVALS:
        drain(arrival)
        playout.receive(t_ms, mido.Message.from_bytes(data))
    drain(float("inf"))
    return played, playout.dropped_late, playout.played_late


async def test_the_pages_playout_schedules_as_the_boxs_does(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    page = await open_page(browser, server, problems)
    result: dict[str, Any] = await page.evaluate(
        """async (arrivals) => {
          const { Playout } = await import("/midi.js");
          let now = 0;
          const playout = new Playout({ delayMs: 20, clock: () => now });
          const played = [];
          const drain = (until) => {
            let due;
            while ((due = playout.nextDueMs()) !== null && due <= until) {
              now = Math.max(now, due);
              played.push([now, playout.due()]);
            }
            now = until;
          };
          for (const [arrival, t, data] of arrivals) {
            drain(arrival);
            playout.receive(t, data);
          }
          drain(Infinity);
          return { played, dropped: playout.droppedLate, late: playout.playedLate };
        }""",
        ARRIVALS,
    )
    expected, dropped, late = _python_schedule()
    assert [tuple(entry) for entry in result["played"]] == [
        (pytest.approx(at), messages) for at, messages in expected
    ]
    assert (result["dropped"], result["late"]) == (dropped, late)
    # What the figures mean: the bunched three keep their 10 and 5 ms spacing; the note-on that
    # came 456 ms late is gone and its note-off still plays.
    assert dropped == 1
    flat = [m for _, messages in expected for m in messages]
    assert [0x90, 65, 100] not in flat and [0x80, 65, 0] in flat
    assert [m[1] for m in flat if m[0] == 0x90] == [60, 62, 64, 67, 69]
    assert problems == []


async def test_the_pages_sounding_notes_release_as_the_boxs_do(
    server: RunningServer, browser: BrowserContext, problems: list[str]
) -> None:
    played = [
        [0x90, 60, 100],
        [0x91, 62, 90],
        [0x90, 64, 80],
        [0x80, 60, 0],
        [0x92, 67, 0],
        [0xB3, 1, 5],
    ]
    released: list[list[int]] = await page_release(
        await open_page(browser, server, problems), played
    )
    notes = SoundingNotes()
    for data in played:
        notes.observe(mido.Message.from_bytes(data))
    assert released == [list(m.bytes()) for m in notes.release()]
    assert problems == []


async def page_release(page: Page, played: list[list[int]]) -> list[list[int]]:
    released: list[list[int]] = await page.evaluate(
        """async (played) => {
          const { SoundingNotes } = await import("/midi.js");
          const notes = new SoundingNotes();
          for (const data of played) notes.observe(data);
          const first = notes.release();
          if (notes.release().length !== 0) throw new Error("release() must forget all");
          return first;
        }""",
        played,
    )
    return released
