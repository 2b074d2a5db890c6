"""The box's signalling client against the real session server: events from what the server
says, joins and their refusals, relaying, audit reports, reconnection and refused tokens."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from device.lifecycle.events import (
    JoinAccepted,
    JoinRefused,
    PeerJoined,
    PeerLeft,
    RoomEnded,
    ScheduleChanged,
    ServerDown,
    ServerUp,
)
from device.net.backoff import Backoff
from device.net.signalling import PeerSignal, SignallingClient
from session_server.clock import FixedClock
from session_server.protocol import (
    Answer,
    Candidate,
    Offer,
    PartyKind,
    Presence,
    Route,
    room_id,
)
from session_server.settings import ServerSettings
from tests.conftest import ADMIN_TOKEN, RunningServer, free_port
from tests.net_support import NOW, EventLog, RestartableServer, eventually
from tests.seed import Pair, seed_pair

STARTS_AT = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


@pytest.fixture
def room(pair: Pair) -> str:
    return room_id(pair.session_id, STARTS_AT)


class Client:
    """A SignallingClient running on the test's loop, with the events it emitted."""

    def __init__(self, url: str, token: str, clock: FixedClock | None = None, **kw: Any) -> None:
        self.log = EventLog()
        self.signals: list[PeerSignal] = []
        kw.setdefault("backoff", Backoff(first=0.05, cap=0.3))
        self.client = SignallingClient(
            url, SecretStr(token), self.log, clock or FixedClock(NOW), **kw
        )
        self.client.subscribe(self.signals.append)
        self.runner = asyncio.get_running_loop().create_task(self.client.run())

    async def up(self) -> ServerUp:
        return await self.log.next(ServerUp)

    async def close(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self.runner, 10)
        assert self.log.off_loop == []


async def _audit(url: str, event: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as admin:
        response = await admin.get("/api/audit", params={"event": event})
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


async def test_welcome_and_schedule_become_server_up_and_schedule_changed_with_the_servers_clock(
    server: RunningServer, pair: Pair, room: str
) -> None:
    # The box's own clock is a year wrong; the server's time is what counts.
    box_clock = FixedClock(datetime(2025, 11, 24, 9, 0, tzinfo=UTC))
    box = Client(server.ws_url, pair.care_home_token, clock=box_clock)
    try:
        up = await box.up()
        assert up.party.kind is PartyKind.CARE_HOME and up.party.name == "Rosewood"
        schedule = await box.log.next(ScheduleChanged)
        assert isinstance(schedule.occurrences, tuple)
        assert [o.room for o in schedule.occurrences] == [room]
        assert box.client.connected and box.client.party == up.party
        assert box.client.server_now() == server.clock.now()
        box_clock.advance(timedelta(minutes=3))
        assert box.client.server_now() == server.clock.now() + timedelta(minutes=3)
        # A schedule change made by a coordinator is pushed and becomes a new event.
        mark = box.log.mark()
        async with httpx.AsyncClient(base_url=server.url, headers=server.admin_headers) as admin:
            response = await admin.post(
                f"/api/sessions/{pair.session_id}/cancellations",
                json={"occurrence_starts_at": "2026-11-24T14:00Z", "reason": "outing"},
            )
            response.raise_for_status()
        changed = await box.log.next(ScheduleChanged, since=mark)
        assert [o.room for o in changed.occurrences] == []
    finally:
        await box.close()


async def test_join_presence_and_leave_become_lifecycle_events(
    server: RunningServer, pair: Pair, room: str
) -> None:
    home = Client(server.ws_url, pair.care_home_token)
    school = Client(server.ws_url, pair.school_device_token)
    try:
        await home.up()
        await school.up()
        assert home.client.join(room)
        assert await home.log.next(JoinAccepted) == JoinAccepted(room, peer_present=False)
        assert home.client.room == room
        assert home.client.ice_servers(room) == ()  # loopback needs neither STUN nor TURN

        assert school.client.join(room)
        assert await school.log.next(JoinAccepted) == JoinAccepted(room, peer_present=True)
        assert await home.log.next(PeerJoined) == PeerJoined(room)
        presence = [s for s in home.signals if isinstance(s, Presence)]
        assert presence and presence[-1].present  # the link manager hears presence too

        assert school.client.leave(room)
        assert school.client.room is None
        assert await home.log.next(PeerLeft) == PeerLeft(room)
        assert school.log.of(PeerJoined) == [] and school.log.of(PeerLeft) == []
    finally:
        await home.close()
        await school.close()


async def test_offer_answer_and_candidates_reach_the_other_box_in_order(
    server: RunningServer, pair: Pair, room: str
) -> None:
    home = Client(server.ws_url, pair.care_home_token)
    school = Client(server.ws_url, pair.school_device_token)
    try:
        await home.up()
        await school.up()
        home.client.join(room)
        await home.log.next(JoinAccepted)
        school.client.join(room)
        await school.log.next(JoinAccepted)

        assert school.client.send(Offer(room=room, sdp="v=0 offer"))
        assert school.client.send(Candidate(room=room, candidate=None))
        assert home.client.send(Answer(room=room, sdp="v=0 answer"))
        await eventually(lambda: len(home.signals) >= 3, "the offer and candidate at the home")
        relayed = [s for s in home.signals if not isinstance(s, Presence)]
        assert relayed == [Offer(room=room, sdp="v=0 offer"), Candidate(room=room)]
        await eventually(lambda: school.signals, "the answer at the school")
        assert school.signals == [Answer(room=room, sdp="v=0 answer")]
    finally:
        await home.close()
        await school.close()


async def test_link_reports_reach_the_audit_log_with_their_route(
    server: RunningServer, pair: Pair, room: str
) -> None:
    home = Client(server.ws_url, pair.care_home_token)
    try:
        await home.up()
        home.client.join(room)
        await home.log.next(JoinAccepted)
        assert home.client.report_link(room, True, Route.RELAY)
        assert home.client.report_link(room, False, Route.RELAY)
        ups = await eventually(lambda: _sync_audit(server.url, "link_up"), "the link_up entry")
        downs = await eventually(lambda: _sync_audit(server.url, "link_down"), "link_down")
        assert ups[0]["room"] == room and ups[0]["detail"]["route"] == "relay"
        assert ups[0]["actor"] == f"device:{pair.care_home_device_id}"
        assert downs[0]["room"] == room
    finally:
        await home.close()


def _sync_audit(url: str, event: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/api/audit",
        params={"event": event},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


async def test_refused_joins_become_join_refused_with_the_servers_reason(
    server: RunningServer, pair: Pair, room: str
) -> None:
    home = Client(server.ws_url, pair.care_home_token)
    try:
        await home.up()
        server.clock.set(datetime(2026, 11, 24, 13, 0, tzinfo=UTC))  # before the window
        home.client.join(room)
        refused = await home.log.next(JoinRefused)
        assert refused.room == room and "13:45" in refused.message
        assert home.client.room is None

        mark = home.log.mark()
        other = "s999@20261124T1400Z"
        home.client.join(other)
        refused = await home.log.next(JoinRefused, since=mark)
        assert refused.room == other
        assert home.log.of(JoinAccepted) == []
    finally:
        await home.close()


async def test_the_server_ending_our_place_becomes_room_ended(
    server: RunningServer, pair: Pair, room: str
) -> None:
    first = Client(server.ws_url, pair.care_home_token)
    second = Client(server.ws_url, pair.care_home_token)  # the same box, connected again
    try:
        await first.up()
        await second.up()
        first.client.join(room)
        await first.log.next(JoinAccepted)
        second.client.join(room)
        await second.log.next(JoinAccepted)
        replaced = await first.log.next(RoomEnded)
        assert replaced.room == room and "another connection" in replaced.message
        assert first.client.room is None

        # A coordinator cancels today's meeting while the box is in its room.
        async with httpx.AsyncClient(base_url=server.url, headers=server.admin_headers) as admin:
            response = await admin.post(
                f"/api/sessions/{pair.session_id}/cancellations",
                json={"occurrence_starts_at": "2026-11-24T14:00Z"},
            )
            response.raise_for_status()
        cancelled = await second.log.next(RoomEnded)
        assert cancelled.room == room and "cancelled" in cancelled.message
        assert second.client.room is None
    finally:
        await first.close()
        await second.close()


async def test_nothing_is_sent_before_the_server_has_welcomed_the_box() -> None:
    port = free_port()  # nobody listens here
    box = Client(f"ws://127.0.0.1:{port}/ws", "unused-token")
    try:
        await eventually(lambda: box.client.attempts >= 3, "a few connection attempts")
        assert not box.client.connected
        assert not box.client.join("s1@20261124T1400Z")
        assert not box.client.report_link("s1@20261124T1400Z", True)
        assert box.client.last_error is not None and "cannot reach" in box.client.last_error
        assert box.log.events == []  # never up, so never "down" either
    finally:
        await box.close()


async def test_losing_the_server_gives_server_down_then_reconnects_to_its_successor(
    server_settings: ServerSettings, clock: FixedClock
) -> None:
    first = RestartableServer(server_settings, clock, free_port())
    first.start()
    home: Client | None = None
    try:
        pair = seed_pair(first.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        room = room_id(pair.session_id, STARTS_AT)
        home = Client(first.ws_url, pair.care_home_token)
        await home.up()
        home.client.join(room)
        await home.log.next(JoinAccepted)
        attempts = home.client.attempts

        mark = home.log.mark()
        await asyncio.to_thread(first.stop)
        await home.log.next(ServerDown, since=mark)
        assert not home.client.connected and home.client.room is None
        # It keeps knocking while the server is away ...
        await eventually(lambda: home.client.attempts >= attempts + 3, "retries while away")
        assert not home.client.join(room)

        # ... and a new server on the same port (same database) takes it back.
        mark = home.log.mark()
        await asyncio.to_thread(first.start)
        up = await home.log.next(ServerUp, since=mark)
        assert up.party.name == "Rosewood"
        assert home.client.join(room)  # the lifecycle rejoins on ServerUp
        assert await home.log.next(JoinAccepted, since=mark) == JoinAccepted(room, False)
    finally:
        if home is not None:
            await home.close()
        await asyncio.to_thread(first.stop)


def leaks(secret: str, text: str) -> bool:
    """Any 8 characters of the secret in the text (log lines may show a secret cut short)."""
    return any(secret[i : i + 8] in text for i in range(len(secret) - 7))


async def test_a_token_the_server_does_not_know_is_logged_without_the_token_and_retried(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = "twmd_" + secrets.token_hex(20)  # unknown to the server
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        box = Client(server.ws_url, token, refused_retry_seconds=0.1)
        try:
            await eventually(lambda: box.client.refusals >= 2, "the token to be tried again")
            assert not box.runner.done()  # no crash: it keeps going
        finally:
            await box.close()
    refusals = [e for e in logs if "refused this box's token" in e["event"]]
    assert refusals and refusals[0]["log_level"] == "error"
    assert "not recognised" in refusals[0]["reason"]
    assert box.client.last_error is not None and "not recognised" in box.client.last_error
    assert box.log.events == []
    assert not leaks(token, repr(logs)) and not leaks(token, caplog.text)
    assert len(await _audit(server.url, "device_refused")) >= 2


async def test_a_device_revoked_while_connected_goes_down_and_is_refused_from_then_on(
    server: RunningServer, pair: Pair
) -> None:
    with capture_logs() as logs:
        box = Client(server.ws_url, pair.care_home_token, refused_retry_seconds=0.1)
        try:
            await box.up()
            async with httpx.AsyncClient(
                base_url=server.url, headers=server.admin_headers
            ) as admin:
                response = await admin.post(f"/api/devices/{pair.care_home_device_id}/revoke")
                response.raise_for_status()
            await box.log.next(ServerDown)
            await eventually(lambda: box.client.refusals >= 2, "the revoked token tried again")
            assert len(box.log.of(ServerUp)) == 1  # never welcomed again
        finally:
            await box.close()
    assert any("revoked" in str(e.get("reason", "")) for e in logs)
    assert not leaks(pair.care_home_token, repr(logs))


async def test_close_stops_a_client_that_is_waiting_to_retry() -> None:
    box = Client(
        f"ws://127.0.0.1:{free_port()}/ws",
        "unused-token",
        backoff=Backoff(first=60.0, cap=60.0),  # a long wait it must not sit out
    )
    await eventually(lambda: box.client.attempts >= 1 and box.client.last_error, "a failure")
    await box.close()
    assert box.runner.done() and box.runner.exception() is None


async def test_the_window_closing_on_the_server_ends_the_room(
    server_settings: ServerSettings, clock: FixedClock
) -> None:
    settings = server_settings.model_copy(update={"sweep_seconds": 0.1})
    running = RestartableServer(settings, clock, free_port())
    await asyncio.to_thread(running.start)
    home: Client | None = None
    try:
        pair = seed_pair(running.url, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        room = room_id(pair.session_id, STARTS_AT)
        home = Client(running.ws_url, pair.care_home_token)
        await home.up()
        home.client.join(room)
        await home.log.next(JoinAccepted)
        clock.set(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 14:45 end + 10 min: closed
        ended = await home.log.next(RoomEnded)
        assert ended.room == room and "over" in ended.message
        assert home.client.room is None
    finally:
        if home is not None:
            await home.close()
        await asyncio.to_thread(running.stop)
