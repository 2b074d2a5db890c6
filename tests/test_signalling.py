"""Signalling between two real WebSocket clients through a real running server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from session_server.protocol import (
    Answer,
    Candidate,
    Error,
    ErrorCode,
    Join,
    Joined,
    Leave,
    LinkReport,
    LinkState,
    Offer,
    PartyKind,
    Presence,
    Route,
    Schedule,
    Welcome,
)
from tests.conftest import RunningServer
from tests.seed import Pair, seed_pair
from tests.signalling_client import SignallingClient

ROOM = "s1@20261124T1400Z"


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


async def signed_in(client: SignallingClient, token: str) -> Schedule:
    await client.hello_device(token)
    await client.expect(Welcome)
    return await client.expect(Schedule)


async def test_device_gets_its_party_and_schedule(server: RunningServer, pair: Pair) -> None:
    async with SignallingClient(server.ws_url) as box:
        await box.hello_device(pair.care_home_token)
        welcome = await box.expect(Welcome)
        schedule = await box.expect(Schedule)
    assert welcome.party.kind is PartyKind.CARE_HOME
    assert welcome.party.name == "Rosewood"
    assert [o.room for o in schedule.occurrences] == [ROOM]
    assert schedule.occurrences[0].school.name == "Hillside"


async def test_offer_answer_and_candidates_pass_between_the_two_parties(
    server: RunningServer, pair: Pair
) -> None:
    async with (
        SignallingClient(server.ws_url) as home,
        SignallingClient(server.ws_url) as school,
    ):
        await signed_in(home, pair.care_home_token)
        await signed_in(school, pair.school_device_token)

        await home.send(Join(room=ROOM))
        first = await home.expect(Joined)
        await school.send(Join(room=ROOM))
        second = await school.expect(Joined)
        assert (first.peer_present, second.peer_present) == (False, True)
        presence = await home.expect(Presence)
        assert presence.present and presence.party.kind is PartyKind.SCHOOL

        await school.send(Offer(room=ROOM, sdp="v=0 offer"))
        assert (await home.expect(Offer)).sdp == "v=0 offer"
        await home.send(Answer(room=ROOM, sdp="v=0 answer"))
        assert (await school.expect(Answer)).sdp == "v=0 answer"
        candidate = Candidate(
            room=ROOM,
            candidate="candidate:1 1 udp 1 127.0.0.1 9 typ host",
            sdp_mid="0",
            sdp_mline_index=0,
        )
        await home.send(candidate)
        assert await school.expect(Candidate) == candidate

        await home.send(LinkReport(room=ROOM, state=LinkState.UP, route=Route.DIRECT))
        await school.send(Leave(room=ROOM))
        gone = await home.expect(Presence)
        assert not gone.present

    audit = httpx.get(f"{server.url}/api/audit", headers=server.admin_headers).json()
    events = [entry["event"] for entry in audit]
    for expected in ("device_connected", "join", "link_up", "leave"):
        assert expected in events
    link = next(entry for entry in audit if entry["event"] == "link_up")
    assert link["detail"]["route"] == "direct"
    assert "v=0" not in json.dumps(audit)  # never content


async def test_school_page_ticket_signs_in_as_the_school(server: RunningServer, pair: Pair) -> None:
    ticket = httpx.post(
        f"{server.url}/api/school/sign-in", json={"code": pair.access_code.lower()}
    ).json()["ticket"]
    async with SignallingClient(server.ws_url) as page:
        await page.hello_ticket(ticket)
        welcome = await page.expect(Welcome)
        await page.expect(Schedule)
        await page.send(Join(room=ROOM))
        joined = await page.expect(Joined)
    assert welcome.party.kind is PartyKind.SCHOOL
    assert joined.ice_servers == []  # none configured: loopback needs none


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", ErrorCode.BAD_JSON),
        (b"\xff\xfe", ErrorCode.BAD_JSON),
        ('{"type":"dance","room":"x"}', ErrorCode.UNKNOWN_TYPE),
        ('{"no_type":1}', ErrorCode.UNKNOWN_TYPE),
        ('["join"]', ErrorCode.UNKNOWN_TYPE),
        ('{"type":"join","room":"../../etc/passwd"}', ErrorCode.INVALID),
        (
            '{"type":"offer","room":"s1@20261124T1400Z","sdp":"' + "x" * 70_000 + '"}',
            ErrorCode.TOO_LARGE,
        ),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_survives(
    server: RunningServer, pair: Pair, frame: str | bytes, code: ErrorCode
) -> None:
    async with SignallingClient(server.ws_url) as box:
        await signed_in(box, pair.care_home_token)
        await box.send_raw(frame)
        error = await box.expect(Error)
        assert error.code is code
        assert "passwd" not in error.message  # the input is never echoed back
        await box.send(Join(room=ROOM))
        assert (await box.expect(Joined)).room == ROOM


async def test_messages_for_a_room_the_sender_is_not_in_are_refused(
    server: RunningServer, pair: Pair
) -> None:
    async with SignallingClient(server.ws_url) as box:
        await signed_in(box, pair.care_home_token)
        await box.send(Offer(room=ROOM, sdp="v=0"))
        assert (await box.expect(Error)).code is ErrorCode.NOT_IN_ROOM
        await box.send(Leave(room=ROOM))
        assert (await box.expect(Error)).code is ErrorCode.NOT_IN_ROOM
        await box.send(Join(room=ROOM))
        await box.expect(Joined)
        await box.send(Offer(room=ROOM, sdp="v=0"))
        assert (await box.expect(Error)).code is ErrorCode.PEER_ABSENT


async def test_a_client_that_keeps_sending_garbage_is_closed_with_1008(
    server: RunningServer, pair: Pair
) -> None:
    async with SignallingClient(server.ws_url) as box:
        await signed_in(box, pair.care_home_token)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(50):
                await box.send_raw("garbage")
                await box.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_garbage_before_hello_is_also_bounded(server: RunningServer) -> None:
    async with SignallingClient(server.ws_url) as stranger:
        await stranger.send(Join(room=ROOM))
        assert (await stranger.expect(Error)).code is ErrorCode.NOT_AUTHENTICATED
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(50):
                await stranger.send_raw("{")
                await stranger.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_wrong_token_is_refused_and_closed(server: RunningServer, pair: Pair) -> None:
    async with SignallingClient(server.ws_url) as box:
        await box.hello_device("twmd_not-a-real-token")
        error = await box.expect(Error)
        assert error.code is ErrorCode.AUTH_FAILED
        assert "twmd_" not in error.message
        with pytest.raises(ConnectionClosed) as closed:
            await box.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_concurrent_rooms_do_not_cross(server: RunningServer) -> None:
    a = seed_pair(server.url, server.admin_headers, tag="A")
    b = seed_pair(server.url, server.admin_headers, tag="B")
    room_a, room_b = f"s{a.session_id}@20261124T1400Z", f"s{b.session_id}@20261124T1400Z"
    async with (
        SignallingClient(server.ws_url) as home_a,
        SignallingClient(server.ws_url) as school_a,
        SignallingClient(server.ws_url) as home_b,
        SignallingClient(server.ws_url) as school_b,
    ):
        for client, token, room in (
            (home_a, a.care_home_token, room_a),
            (home_b, b.care_home_token, room_b),
            (school_a, a.school_device_token, room_a),
            (school_b, b.school_device_token, room_b),
        ):
            await signed_in(client, token)
            await client.send(Join(room=room))
            await client.expect(Joined)
        await home_a.expect(Presence)
        await home_b.expect(Presence)

        # B's school cannot get into A's room, nor send into it.
        await school_b.send(Join(room=room_a))
        refused = await school_b.expect(Error)
        assert refused.code is ErrorCode.NOT_YOUR_SESSION
        await school_b.send(Offer(room=room_a, sdp="intruder"))
        assert (await school_b.expect(Error)).code is ErrorCode.NOT_IN_ROOM

        await asyncio.gather(
            school_a.send(Offer(room=room_a, sdp="for A")),
            school_b.send(Offer(room=room_b, sdp="for B")),
        )
        assert (await home_a.expect(Offer)).sdp == "for A"
        assert (await home_b.expect(Offer)).sdp == "for B"


async def test_schedule_is_pushed_again_when_it_changes(server: RunningServer, pair: Pair) -> None:
    async with SignallingClient(server.ws_url) as box:
        await signed_in(box, pair.care_home_token)
        pairing = httpx.get(f"{server.url}/api/pairings", headers=server.admin_headers).json()[0]
        httpx.post(
            f"{server.url}/api/sessions",
            headers=server.admin_headers,
            json={
                "pairing_id": pairing["id"],
                "title": "Extra",
                "starts_local": "2026-11-25T10:00",
                "duration_minutes": 30,
            },
        ).raise_for_status()
        pushed = await box.next_of(Schedule)
    assert [o.title for o in pushed.occurrences] == ["Singing together", "Extra"]


async def test_a_newer_connection_of_the_same_side_replaces_the_older(
    server: RunningServer, pair: Pair
) -> None:
    async with (
        SignallingClient(server.ws_url) as old,
        SignallingClient(server.ws_url) as new,
        SignallingClient(server.ws_url) as school,
    ):
        for client, token in ((old, pair.care_home_token), (school, pair.school_device_token)):
            await signed_in(client, token)
            await client.send(Join(room=ROOM))
            await client.expect(Joined)
        await old.expect(Presence)
        await signed_in(new, pair.care_home_token)
        await new.send(Join(room=ROOM))
        assert (await new.expect(Joined)).peer_present
        assert (await old.expect(Error)).code is ErrorCode.REPLACED
        assert not (await school.expect(Presence)).present
        assert (await school.expect(Presence)).present
        await school.send(Offer(room=ROOM, sdp="to the new one"))
        assert (await new.expect(Offer)).sdp == "to the new one"


async def test_the_admin_device_list_says_which_devices_are_connected_now(
    server: RunningServer, pair: Pair
) -> None:
    def online() -> dict[int, bool]:
        listed = httpx.get(f"{server.url}/api/devices", headers=server.admin_headers, timeout=10)
        listed.raise_for_status()
        return {device["id"]: device["online"] for device in listed.json()}

    assert not any(online().values())
    async with SignallingClient(server.ws_url) as box:
        await signed_in(box, pair.care_home_token)
        connected = online()
    assert [device for device, up in connected.items() if up] == [pair.care_home_device_id]
    for _ in range(100):  # the server notices the closed socket a moment later
        if not any(online().values()):
            break
        await asyncio.sleep(0.05)
    assert not any(online().values())
