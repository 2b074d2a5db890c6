"""The authorisation matrix, through the running server: who may sign in, join and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from session_server.protocol import Error, ErrorCode, Join, Joined, Schedule, Welcome
from tests.conftest import RunningServer
from tests.seed import Pair, seed_pair
from tests.signalling_client import SignallingClient

ROOM = "s1@20261124T1400Z"


@pytest.fixture
def pair(server: RunningServer) -> Pair:
    return seed_pair(server.url, server.admin_headers)


def sign_in(server: RunningServer, code: str) -> httpx.Response:
    return httpx.post(f"{server.url}/api/school/sign-in", json={"code": code})


async def join_as_device(server: RunningServer, token: str, room: str) -> Joined | Error:
    async with SignallingClient(server.ws_url) as box:
        await box.hello_device(token)
        await box.expect(Welcome)
        await box.expect(Schedule)
        await box.send(Join(room=room))
        reply = await box.recv()
    assert isinstance(reply, Joined | Error)
    return reply


def test_a_wrong_code_is_refused(server: RunningServer, pair: Pair) -> None:
    response = sign_in(server, "AAAA-BBBB-CCCC")
    assert response.status_code == 401
    assert "not valid" in response.json()["detail"]


def test_a_code_is_accepted_however_it_is_typed(server: RunningServer, pair: Pair) -> None:
    typed = " " + pair.access_code.lower().replace("-", " ") + " "
    response = sign_in(server, typed)
    assert response.status_code == 200
    assert response.json()["school"]["name"] == "Hillside"


def test_a_revoked_code_is_refused_and_its_tickets_stop_working(
    server: RunningServer, pair: Pair
) -> None:
    ticket = sign_in(server, pair.access_code).json()["ticket"]
    httpx.post(
        f"{server.url}/api/access-codes/{pair.access_code_id}/revoke", headers=server.admin_headers
    ).raise_for_status()
    response = sign_in(server, pair.access_code)
    assert response.status_code == 401
    assert "withdrawn" in response.json()["detail"]
    listed = httpx.get(
        f"{server.url}/api/school/sessions", headers={"Authorization": f"Bearer {ticket}"}
    )
    assert listed.status_code == 401


def test_sign_in_attempts_are_rate_limited(server: RunningServer, pair: Pair) -> None:
    statuses = [sign_in(server, "WRONG-CODE-0000").status_code for _ in range(5)]
    assert statuses == [401] * 5
    limited = sign_in(server, pair.access_code)  # even the right code waits its turn
    assert limited.status_code == 429
    assert "wait" in limited.json()["detail"]
    assert int(limited.headers["Retry-After"]) > 0


async def test_a_revoked_device_is_refused(server: RunningServer, pair: Pair) -> None:
    httpx.post(
        f"{server.url}/api/devices/{pair.care_home_device_id}/revoke", headers=server.admin_headers
    ).raise_for_status()
    async with SignallingClient(server.ws_url) as box:
        await box.hello_device(pair.care_home_token)
        error = await box.expect(Error)
        assert error.code is ErrorCode.AUTH_FAILED and "revoked" in error.message
        with pytest.raises(ConnectionClosed):
            await box.recv()


async def test_revoking_a_connected_device_disconnects_it(
    server: RunningServer, pair: Pair
) -> None:
    async with SignallingClient(server.ws_url) as box:
        await box.hello_device(pair.care_home_token)
        await box.expect(Welcome)
        await box.expect(Schedule)
        httpx.post(
            f"{server.url}/api/devices/{pair.care_home_device_id}/revoke",
            headers=server.admin_headers,
        ).raise_for_status()
        error = await box.expect(Error)
        assert error.code is ErrorCode.AUTH_FAILED
        with pytest.raises(ConnectionClosed) as closed:
            await box.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_another_schools_session_is_refused(server: RunningServer, pair: Pair) -> None:
    other = seed_pair(server.url, server.admin_headers, tag="2")
    reply = await join_as_device(server, other.school_device_token, ROOM)
    assert isinstance(reply, Error) and reply.code is ErrorCode.NOT_YOUR_SESSION


async def test_before_the_window_the_reason_names_the_opening_time(
    server: RunningServer, pair: Pair
) -> None:
    server.clock.set(datetime(2026, 11, 24, 13, 44, tzinfo=UTC))
    reply = await join_as_device(server, pair.care_home_token, ROOM)
    assert isinstance(reply, Error) and reply.code is ErrorCode.NOT_OPEN_YET
    assert reply.message == "this session opens at 13:45"
    server.clock.set(datetime(2026, 11, 24, 13, 45, tzinfo=UTC))
    assert isinstance(await join_as_device(server, pair.care_home_token, ROOM), Joined)


async def test_after_the_window_the_room_is_closed(server: RunningServer, pair: Pair) -> None:
    server.clock.set(datetime(2026, 11, 24, 14, 54, 59, tzinfo=UTC))
    assert isinstance(await join_as_device(server, pair.care_home_token, ROOM), Joined)
    server.clock.set(datetime(2026, 11, 24, 14, 55, tzinfo=UTC))
    reply = await join_as_device(server, pair.care_home_token, ROOM)
    assert isinstance(reply, Error) and reply.code is ErrorCode.CLOSED
    assert reply.message == "this session closed at 14:55"


async def test_a_made_up_room_is_refused(server: RunningServer, pair: Pair) -> None:
    for room in ("s1@20261124T1500Z", "s999@20261124T1400Z"):
        reply = await join_as_device(server, pair.care_home_token, room)
        assert isinstance(reply, Error) and reply.code is ErrorCode.NO_SUCH_ROOM


async def test_recurring_session_in_the_week_the_clocks_change(server: RunningServer) -> None:
    # Every Tuesday 14:00 London. Clocks go back on Sunday 25 October 2026.
    pair = seed_pair(
        server.url,
        server.admin_headers,
        starts_local="2026-10-13T14:00",
        rrule="FREQ=WEEKLY;BYDAY=TU",
    )
    summer_room, winter_room = (
        f"s{pair.session_id}@20261020T1300Z",
        f"s{pair.session_id}@20261027T1400Z",
    )

    server.clock.set(datetime(2026, 10, 20, 12, 50, tzinfo=UTC))  # 13:50 BST
    assert isinstance(await join_as_device(server, pair.care_home_token, summer_room), Joined)

    server.clock.set(datetime(2026, 10, 27, 12, 50, tzinfo=UTC))  # 12:50 GMT: too early now
    early = await join_as_device(server, pair.care_home_token, winter_room)
    assert isinstance(early, Error) and early.message == "this session opens at 13:45"
    wrong_hour = await join_as_device(
        server, pair.care_home_token, f"s{pair.session_id}@20261027T1300Z"
    )
    assert isinstance(wrong_hour, Error) and wrong_hour.code is ErrorCode.NO_SUCH_ROOM

    server.clock.set(datetime(2026, 10, 27, 13, 50, tzinfo=UTC))  # 13:50 GMT
    assert isinstance(await join_as_device(server, pair.care_home_token, winter_room), Joined)


async def test_a_cancelled_occurrence_is_refused(server: RunningServer, pair: Pair) -> None:
    httpx.post(
        f"{server.url}/api/sessions/{pair.session_id}/cancellations",
        headers=server.admin_headers,
        json={"occurrence_starts_at": "2026-11-24T14:00:00+00:00", "reason": "trip"},
    ).raise_for_status()
    reply = await join_as_device(server, pair.care_home_token, ROOM)
    assert isinstance(reply, Error) and reply.code is ErrorCode.CANCELLED


async def test_an_expired_ticket_is_refused_on_the_page_and_the_socket(
    server: RunningServer, pair: Pair
) -> None:
    ticket = sign_in(server, pair.access_code).json()["ticket"]
    auth = {"Authorization": f"Bearer {ticket}"}
    assert httpx.get(f"{server.url}/api/school/sessions", headers=auth).status_code == 200
    server.clock.advance(timedelta(minutes=server.settings.ticket_minutes))
    expired = httpx.get(f"{server.url}/api/school/sessions", headers=auth)
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    async with SignallingClient(server.ws_url) as page:
        await page.hello_ticket(ticket)
        error = await page.expect(Error)
    assert error.code is ErrorCode.AUTH_FAILED and "expired" in error.message


def test_todays_sessions_say_whether_join_is_open(server: RunningServer, pair: Pair) -> None:
    ticket = sign_in(server, pair.access_code).json()["ticket"]
    auth = {"Authorization": f"Bearer {ticket}"}
    server.clock.set(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    early = httpx.get(f"{server.url}/api/school/sessions", headers=auth).json()
    [occurrence] = early["occurrences"]
    assert occurrence["care_home"]["name"] == "Rosewood"
    assert (occurrence["starts_local"], occurrence["ends_local"]) == ("14:00", "14:45")
    assert occurrence["can_join"] is False
    assert occurrence["refusal"] == "this session opens at 13:45"
    server.clock.set(datetime(2026, 11, 24, 13, 50, tzinfo=UTC))
    now = httpx.get(f"{server.url}/api/school/sessions", headers=auth).json()
    assert now["occurrences"][0]["can_join"] is True


def test_the_page_without_a_ticket_is_told_to_sign_in(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/api/school/sessions")
    assert response.status_code == 401
    assert "access code" in response.json()["detail"]


async def test_a_page_connected_before_its_ticket_expired_cannot_join_after(
    server: RunningServer, pair: Pair
) -> None:
    ticket = sign_in(server, pair.access_code).json()["ticket"]
    async with SignallingClient(server.ws_url) as page:
        await page.hello_ticket(ticket)
        await page.expect(Welcome)
        await page.expect(Schedule)
        server.clock.advance(timedelta(minutes=server.settings.ticket_minutes))
        await page.send(Join(room=ROOM))
        error = await page.expect(Error)
        assert error.code is ErrorCode.AUTH_FAILED and "expired" in error.message
        with pytest.raises(ConnectionClosed):
            await page.recv()
