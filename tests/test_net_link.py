"""Two boxes (a care home and a school box) with real signalling clients and link managers,
through the real session server, with a tone for each microphone: the link comes up with
audio both ways, reactions cross, a lost link is noticed and rebuilt, glare resolves, and
closing leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from device.lifecycle.actions import CloseLink, OpenLink, SendReaction
from device.lifecycle.events import (
    JoinAccepted,
    LinkDown,
    LinkUp,
    PeerJoined,
    PeerLeft,
    ReactionArrived,
    ServerDown,
    ServerUp,
)
from device.net.link_settings import LinkSettings
from device.net.sdp import tune_for_music
from session_server.clock import FixedClock
from session_server.protocol import Answer, Candidate, Offer, PartyKind, ReactionKind, room_id
from session_server.settings import ServerSettings
from tests.conftest import ADMIN_TOKEN, RunningServer, free_port
from tests.net_support import (
    LOOPBACK,
    Box,
    RestartableServer,
    eventually,
    running_coturn,
    start_box,
)
from tests.seed import Pair, seed_pair

STARTS_AT = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


@dataclass
class Session:
    home: Box
    school: Box
    room: str


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


async def in_room(
    ws_url: str,
    pair: Pair,
    room: str,
    *,
    home_settings: LinkSettings = LOOPBACK,
    school_settings: LinkSettings = LOOPBACK,
    tune_sdp: Callable[[str], str] | None = None,
) -> Session:
    """Both boxes connected and in the room: the care home first, then the school box."""
    home = start_box(
        ws_url, pair.care_home_token, PartyKind.CARE_HOME, settings=home_settings, tune_sdp=tune_sdp
    )
    school = start_box(
        ws_url,
        pair.school_device_token,
        PartyKind.SCHOOL,
        settings=school_settings,
        tune_sdp=tune_sdp,
    )
    await home.log.next(ServerUp)
    await school.log.next(ServerUp)
    home.client.join(room)
    assert await home.log.next(JoinAccepted) == JoinAccepted(room, peer_present=False)
    school.client.join(room)
    assert await school.log.next(JoinAccepted) == JoinAccepted(room, peer_present=True)
    await home.log.next(PeerJoined)
    return Session(home, school, room)


async def connected(session: Session) -> None:
    """What the lifecycle does: the second to join offers, the first waits for the offer."""
    home_mark, school_mark = session.home.log.mark(), session.school.log.mark()
    session.school.links.perform(OpenLink(session.room, offer=True))
    session.home.links.perform(OpenLink(session.room, offer=False))
    assert await session.home.log.next(LinkUp, since=home_mark) == LinkUp(session.room)
    assert await session.school.log.next(LinkUp, since=school_mark) == LinkUp(session.room)


async def audio_flows_both_ways(session: Session) -> None:
    home, school = session.home.ear, session.school.ear
    before = home.frames, school.frames
    await eventually(
        lambda: home.frames > before[0] + 25 and school.frames > before[1] + 25,
        "audio frames both ways",
    )
    # The tone itself, not packets of silence.
    await eventually(lambda: home.loudest > 1000 and school.loudest > 1000, "the tones")
    # Each track came with its own RTCRtpReceiver (the music receive path taps it).
    for ear in (home, school):
        track, receiver = ear.handed[-1]
        assert receiver.track is track


@pytest.fixture
async def session(server: RunningServer, pair: Pair) -> AsyncIterator[Session]:
    made = await in_room(server.ws_url, pair, room_id(pair.session_id, STARTS_AT))
    try:
        yield made
    finally:
        await made.home.close()
        await made.school.close()


def _audit(url: str, event: str) -> list[dict[str, object]]:
    response = httpx.get(
        f"{url}/api/audit",
        params={"event": event},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    response.raise_for_status()
    entries: list[dict[str, object]] = response.json()
    return entries


async def test_two_boxes_go_live_with_audio_and_reactions_both_ways(
    server: RunningServer, pair: Pair, session: Session
) -> None:
    await connected(session)
    await audio_flows_both_ways(session)

    session.home.links.perform(SendReaction(ReactionKind.HEART))
    assert await session.school.log.next(ReactionArrived) == ReactionArrived(ReactionKind.HEART)
    session.school.links.perform(SendReaction(ReactionKind.CLAP))
    assert await session.home.log.next(ReactionArrived) == ReactionArrived(ReactionKind.CLAP)

    # Heartbeats go both ways, every second.
    home_link, school_link = session.home.links.link, session.school.links.link
    assert home_link is not None and school_link is not None
    await eventually(
        lambda: home_link.heartbeats_heard >= 2 and school_link.heartbeats_heard >= 2,
        "heartbeats both ways",
    )
    # Each box told the audit log its link is up, and that it goes direct on loopback.
    ups = await eventually(
        lambda: len(_audit(server.url, "link_up")) >= 2 and _audit(server.url, "link_up"),
        "both link_up entries",
    )
    actors = {str(e["actor"]) for e in ups}
    assert f"device:{pair.care_home_device_id}" in actors and len(actors) == 2
    assert {e["detail"]["route"] for e in ups if isinstance(e["detail"], dict)} == {"direct"}
    assert session.home.links.link is home_link and home_link.route.value == "direct"


async def test_a_closed_link_is_noticed_by_the_other_side_and_rebuilt_by_the_offerer(
    server: RunningServer, session: Session
) -> None:
    await connected(session)
    await audio_flows_both_ways(session)
    tracks = session.home.ear.tracks

    # The school box (which offered) drops its link without a word to the server.
    home_mark = session.home.log.mark()
    session.school.links.perform(CloseLink(session.room))
    assert await session.home.log.next(LinkDown, since=home_mark) == LinkDown(session.room)
    assert session.school.log.of(LinkDown) == []  # closing on request is not news

    # It offers again; the care home's dead link is replaced by one that answers.
    await connected_again_by(session, offerer=session.school)
    assert session.home.ear.tracks == tracks + 1
    await audio_flows_both_ways(session)
    downs = await eventually(lambda: _audit(server.url, "link_down"), "link_down entries")
    assert downs


async def connected_again_by(session: Session, *, offerer: Box) -> None:
    home_mark, school_mark = session.home.log.mark(), session.school.log.mark()
    offerer.links.perform(OpenLink(session.room, offer=True))
    assert await session.home.log.next(LinkUp, since=home_mark) == LinkUp(session.room)
    assert await session.school.log.next(LinkUp, since=school_mark) == LinkUp(session.room)


async def test_an_offer_that_came_before_the_link_was_asked_for_is_answered_when_it_is(
    session: Session,
) -> None:
    await connected(session)
    # The care home (which answered) closes; the school notices, and offers a new link ...
    school_mark = session.school.log.mark()
    session.home.links.perform(CloseLink(session.room))
    await session.school.log.next(LinkDown, since=school_mark)
    offers: list[Offer] = []
    session.home.client.subscribe(lambda m: offers.append(m) if isinstance(m, Offer) else None)
    home_mark = session.home.log.mark()
    session.school.links.perform(OpenLink(session.room, offer=True))
    # ... before the care home asked for one: the offer waits, nothing is built unasked.
    await eventually(lambda: offers, "the school's offer at the care home")
    assert session.home.links.link is None
    session.home.links.perform(OpenLink(session.room, offer=False))
    assert await session.home.log.next(LinkUp, since=home_mark) == LinkUp(session.room)
    await session.school.log.next(LinkUp, since=school_mark)
    await audio_flows_both_ways(session)


async def test_an_offer_while_live_replaces_the_link_as_the_school_page_rebuilds(
    session: Session,
) -> None:
    await connected(session)
    old = session.home.links.link
    tracks = session.home.ear.tracks
    session.school.links.perform(OpenLink(session.room, offer=True))  # no CloseLink first
    await eventually(
        lambda: (
            session.home.links.link is not old
            and session.home.links.link is not None
            and session.home.links.link.alive
        ),
        "the care home's new link to come alive",
    )
    assert old is not None and old.closed
    assert session.home.ear.tracks == tracks + 1
    await audio_flows_both_ways(session)
    # However the old link's end was noticed, the lifecycle ends up told the link is up.
    assert isinstance(
        [e for e in session.home.log.events if isinstance(e, LinkUp | LinkDown)][-1], LinkUp
    )


async def test_glare_the_care_home_keeps_its_offer_and_the_school_box_answers(
    session: Session,
) -> None:
    home_mark, school_mark = session.home.log.mark(), session.school.log.mark()
    # Both sides offer at once (each thinks it should rebuild).
    session.home.links.perform(OpenLink(session.room, offer=True))
    session.school.links.perform(OpenLink(session.room, offer=True))
    await session.home.log.next(LinkUp, since=home_mark)
    await session.school.log.next(LinkUp, since=school_mark)
    home_link, school_link = session.home.links.link, session.school.links.link
    assert home_link is not None and home_link.offerer  # impolite: kept its own offer
    assert school_link is not None and not school_link.offerer  # polite: answered instead
    await audio_flows_both_ways(session)


async def test_a_silent_data_channel_takes_the_link_down_and_heartbeats_bring_it_back(
    server: RunningServer, pair: Pair
) -> None:
    # The school box sends its heartbeats only every 10 s: far longer than 4 s of silence.
    slow = LinkSettings(host_addresses=("127.0.0.1",), heartbeat_seconds=10.0)
    session = await in_room(
        server.ws_url, pair, room_id(pair.session_id, STARTS_AT), school_settings=slow
    )
    try:
        await connected(session)
        await session.home.log.next(LinkDown)
        down_at = session.home.log.mark()
        link = session.home.links.link
        assert link is not None and link.connection_state == "connected"  # ICE still fine
        # The school's heartbeat arrives after all: the same link is up again.
        assert await session.home.log.next(LinkUp, since=down_at) == LinkUp(session.room)
        assert session.home.links.link is link
    finally:
        await session.home.close()
        await session.school.close()


async def test_garbage_on_the_data_channel_is_counted_and_ignored(session: Session) -> None:
    await connected(session)
    school_link, home_link = session.school.links.link, session.home.links.link
    assert school_link is not None and home_link is not None
    channel = school_link.channel
    assert channel is not None
    for junk in ("not json", '{"type": "reaction", "kind": "boo"}', b"\x00\x01", '{"type": 1}'):
        channel.send(junk)
    session.school.links.perform(SendReaction(ReactionKind.WAVE))
    assert await session.home.log.next(ReactionArrived) == ReactionArrived(ReactionKind.WAVE)
    assert home_link.bad_messages == 4
    assert home_link.alive and session.home.log.of(LinkDown) == []


async def test_a_reaction_without_a_live_link_is_not_sent(session: Session) -> None:
    assert not session.home.links.send_reaction(ReactionKind.CLAP)
    session.home.links.perform(OpenLink(session.room, offer=False))  # waits for an offer
    assert not session.home.links.send_reaction(ReactionKind.CLAP)


async def test_closing_tears_down_the_peer_connection_its_tasks_and_the_microphone(
    session: Session,
) -> None:
    await connected(session)
    home_link = session.home.links.link
    assert home_link is not None
    microphones = list(session.home.microphones) + list(session.school.microphones)
    await session.home.links.aclose()
    await session.school.links.aclose()
    assert home_link.closed and home_link.connection_state == "closed"
    assert session.home.links.link is None
    assert all(track.readyState == "ended" for track in microphones)
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("link-")]
    assert left == []


async def test_media_goes_through_the_turn_relay_the_server_hands_out(
    tmp_path: Path, clock: FixedClock
) -> None:
    """A box told to use only the relay connects through coturn with the credentials from
    its join, and reports the relay route to the audit log."""
    with running_coturn(tmp_path / "coturn") as turn:
        # TURN credentials expire by the real clock: the server's must be now, with a session
        # in its window now.
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        clock.set(now)
        settings = ServerSettings(
            data_dir=tmp_path / "server",
            admin_token=ADMIN_TOKEN,
            turn_urls=[turn.url],
            turn_secret=turn.secret,
        )
        server = RestartableServer(settings, clock, free_port())
        await asyncio.to_thread(server.start)
        session: Session | None = None
        try:
            starts = now + timedelta(minutes=5)
            local = starts.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%dT%H:%M")
            pair = seed_pair(
                server.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, starts_local=local
            )
            relay = LinkSettings(host_addresses=("127.0.0.1",), relay_only=True)
            session = await in_room(
                server.ws_url, pair, room_id(pair.session_id, starts), home_settings=relay
            )
            assert session.home.client.ice_servers(session.room)[0].urls == [turn.url]
            await connected(session)
            await audio_flows_both_ways(session)
            ups = await eventually(
                lambda: len(_audit(server.url, "link_up")) >= 2 and _audit(server.url, "link_up"),
                "both link_up entries",
            )
            routes = {e["detail"]["route"] for e in ups if isinstance(e["detail"], dict)}
            assert routes == {"relay"}
        finally:
            if session is not None:
                await session.home.close()
                await session.school.close()
            await asyncio.to_thread(server.stop)


async def test_losing_the_server_leaves_a_live_link_alone(
    server_settings: ServerSettings, clock: FixedClock
) -> None:
    """Media goes peer to peer: a signalling outage is not a reason to drop the sound."""
    server = RestartableServer(server_settings, clock, free_port())
    await asyncio.to_thread(server.start)
    session: Session | None = None
    try:
        pair = seed_pair(server.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        session = await in_room(server.ws_url, pair, room_id(pair.session_id, STARTS_AT))
        await connected(session)
        await asyncio.to_thread(server.stop)
        await session.home.log.next(ServerDown)
        await session.school.log.next(ServerDown)
        await audio_flows_both_ways(session)
        session.home.links.perform(SendReaction(ReactionKind.WAVE))
        assert await session.school.log.next(ReactionArrived) == ReactionArrived(ReactionKind.WAVE)
        assert session.home.log.of(LinkDown) == [] and session.school.log.of(LinkDown) == []
    finally:
        if session is not None:
            await session.home.close()
            await session.school.close()
        await asyncio.to_thread(server.stop)


async def test_trickled_candidates_are_taken_and_broken_ones_ignored(session: Session) -> None:
    """The page trickles candidates it finds after sending its SDP; the box adds them to the
    link, and one it cannot read, or the end-of-candidates mark, does not disturb it."""
    await connected(session)
    link = session.home.links.link
    assert link is not None
    room = session.room
    for candidate in (
        Candidate(
            room=room,
            candidate="candidate:1 1 udp 2122260223 127.0.0.1 9 typ host",
            sdp_mid="0",
            sdp_mline_index=0,
        ),
        Candidate(room=room, candidate="candidate:garbage", sdp_mid="0", sdp_mline_index=0),
        Candidate(room=room, candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host"),  # no mid
        Candidate(
            room=room,
            candidate="candidate:2 1 udp 1 not-an-address 9 typ host",
            sdp_mid="0",
        ),
        Candidate(room=room, candidate="candidate:3 1 udp x 127.0.0.1 y typ host", sdp_mid="0"),
        Candidate(room=room),  # end of candidates
    ):
        assert session.school.client.send(candidate)
    session.school.links.perform(SendReaction(ReactionKind.CLAP))
    assert await session.home.log.next(ReactionArrived) == ReactionArrived(ReactionKind.CLAP)
    await audio_flows_both_ways(session)
    assert session.home.links.link is link and link.alive
    assert session.home.log.of(LinkDown) == []
    # Unreadable, no media section, non-numeric fields; aioice itself drops the bad address.
    await eventually(lambda: link.bad_candidates == 3, "the unusable candidates counted")


class LaggingLifecycle:
    """Carries out the lifecycle's answer to PeerLeft and PeerJoined, as the agent does, from
    a queue, but only once released: the care home's link manager sees the other side's new
    offer before the CloseLink and OpenLink that its leaving and coming back lead to."""

    def __init__(self, box: Box) -> None:
        self._box = box
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._released = asyncio.Event()
        self.done: list[object] = []
        box.log.listeners.append(self._queue.put_nowait)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def release(self) -> None:
        self._released.set()

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            if isinstance(event, PeerLeft | PeerJoined):
                await self._released.wait()
                if isinstance(event, PeerLeft):
                    self._box.links.perform(CloseLink(event.room))
                else:
                    self._box.links.perform(OpenLink(event.room, offer=False))
                self.done.append(event)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_an_offer_overtaking_the_lifecycles_close_for_the_old_peer_is_kept_and_answered(
    session: Session,
) -> None:
    await connected(session)
    lifecycle = LaggingLifecycle(session.home)
    try:
        offers: list[Offer] = []
        session.home.client.subscribe(lambda m: offers.append(m) if isinstance(m, Offer) else None)
        # The school box leaves and comes straight back (as a page does after its connection
        # dropped), joining second, so it offers at once.
        school_mark, home_mark = session.school.log.mark(), session.home.log.mark()
        session.school.client.leave(session.room)
        session.school.links.perform(CloseLink(session.room))
        session.school.client.join(session.room)
        assert await session.school.log.next(JoinAccepted, since=school_mark) == JoinAccepted(
            session.room, peer_present=True
        )
        session.school.links.perform(OpenLink(session.room, offer=True))
        await eventually(lambda: offers, "the school's new offer at the care home")
        await session.home.log.next(PeerLeft, since=home_mark)
        await session.home.log.next(PeerJoined, since=home_mark)
        assert lifecycle.done == []  # the care home's lifecycle has not caught up yet

        lifecycle.release()
        await session.school.log.next(LinkUp, since=school_mark)
        await eventually(lambda: len(lifecycle.done) == 2, "the late CloseLink and OpenLink")
        link = session.home.links.link
        assert link is not None and not link.offerer
        await eventually(lambda: link.alive, "the care home's link answering the new offer")
        await audio_flows_both_ways(session)
    finally:
        await lifecycle.close()


async def test_music_boxes_send_tuned_sdp_and_still_go_live(
    server: RunningServer, pair: Pair
) -> None:
    made = await in_room(
        server.ws_url, pair, room_id(pair.session_id, STARTS_AT), tune_sdp=tune_for_music
    )
    seen: list[Offer | Answer] = []
    for box in (made.home, made.school):
        box.client.subscribe(
            lambda message: seen.append(message) if isinstance(message, Offer | Answer) else None
        )
    try:
        await connected(made)
        await audio_flows_both_ways(made)
    finally:
        await made.home.close()
        await made.school.close()

    assert sorted(type(message).__name__ for message in seen) == ["Answer", "Offer"]
    for message in seen:
        assert "a=ptime:10\r\n" in message.sdp
        assert "useinbandfec=1" in message.sdp
