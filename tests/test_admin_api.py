"""The admin REST API against a real server (uvicorn on loopback) and its SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from session_server.credentials import digest
from session_server.protocol import Error, Schedule, Welcome
from session_server.settings import ServerSettings
from tests.conftest import RunningServer
from tests.signalling_client import SignallingClient


@pytest.fixture
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.admin_headers, timeout=10) as client:
        yield client


def _created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def _pairing(api: httpx.Client) -> tuple[int, int, int]:
    home = _created(api.post("/api/care-homes", json={"name": "Rosewood Care Home"}))
    school = _created(api.post("/api/schools", json={"name": "Hillside Primary"}))
    pairing = _created(
        api.post("/api/pairings", json={"care_home_id": home["id"], "school_id": school["id"]})
    )
    return home["id"], school["id"], pairing["id"]


def _weekly(api: httpx.Client, pairing_id: int, starts_local: str) -> Any:
    return _created(
        api.post(
            "/api/sessions",
            json={
                "pairing_id": pairing_id,
                "title": "Tuesday singing",
                "starts_local": starts_local,
                "duration_minutes": 45,
                "rrule": "FREQ=WEEKLY;BYDAY=TU",
            },
        )
    )


def _database_rows(settings: ServerSettings, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(settings.data_dir / "twm.sqlite3") as connection:
        return connection.execute(query).fetchall()


# --- who may call it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-admin-token"}, {"Authorization": "Basic YWRtaW4="}],
    ids=["no token", "wrong token", "wrong scheme"],
)
def test_admin_api_refuses_callers_without_the_admin_token(
    server: RunningServer, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, headers=headers) as client:
        for method, path in [("GET", "/api/care-homes"), ("POST", "/api/schools")]:
            response = client.request(method, path, json={"name": "Intruder School"})
            assert response.status_code == 401
            assert "admin token" in response.json()["detail"]
    rows = _database_rows(server.settings, "SELECT name FROM schools")
    assert rows == []


class TestWithoutAdminToken:
    @pytest.fixture
    def server_settings(self, tmp_path: Path) -> ServerSettings:
        return ServerSettings(data_dir=tmp_path / "server", admin_token=None)

    def test_admin_api_is_off_when_no_admin_token_is_configured(
        self, server: RunningServer
    ) -> None:
        response = httpx.get(
            f"{server.url}/api/care-homes", headers={"Authorization": "Bearer anything"}
        )
        assert response.status_code == 503
        assert "TWM_SERVER_ADMIN_TOKEN" in response.json()["detail"]


# --- the directory ---------------------------------------------------------------------------


def test_organisations_are_created_listed_and_duplicates_conflict(api: httpx.Client) -> None:
    for path, names in [
        ("/api/care-homes", ["Rosewood Care Home", "Oakfield House"]),
        ("/api/schools", ["Hillside Primary", "Brook Lane Academy"]),
    ]:
        for name in names:
            body = _created(api.post(path, json={"name": name}))
            assert body["name"] == name
        listed = api.get(path).json()
        assert sorted(x["name"] for x in listed) == sorted(names)
        clash = api.post(path, json={"name": names[0]})
        assert clash.status_code == 409
        assert clash.json() == {
            "detail": f"a {path[5:-1].replace('-', ' ')} named {names[0]!r} already exists"
        }


def test_requests_with_unknown_or_missing_fields_are_refused(api: httpx.Client) -> None:
    assert api.post("/api/care-homes", json={"name": ""}).status_code == 422
    assert api.post("/api/care-homes", json={"nmae": "Typo House"}).status_code == 422
    assert api.get("/api/care-homes").json() == []


def test_device_token_is_returned_once_and_only_its_hash_is_stored(
    server: RunningServer, api: httpx.Client
) -> None:
    home_id, school_id, _ = _pairing(api)
    device = _created(
        api.post("/api/devices", json={"name": "rosewood-box", "care_home_id": home_id})
    )
    token = device["token"]
    assert token.startswith("twmd_")
    assert device["care_home"] == {"id": home_id, "name": "Rosewood Care Home"}
    assert device["school"] is None
    _created(api.post("/api/devices", json={"name": "hillside-box", "school_id": school_id}))

    listed = api.get("/api/devices")
    assert [d["name"] for d in listed.json()] == ["rosewood-box", "hillside-box"]
    assert token not in listed.text
    assert all("token" not in d and "token_hash" not in d for d in listed.json())

    rows = _database_rows(server.settings, "SELECT name, token_hash FROM devices ORDER BY id")
    assert rows[0] == ("rosewood-box", digest(token))
    assert token not in json.dumps(rows)


def test_device_needs_exactly_one_owner_and_a_free_name(api: httpx.Client) -> None:
    home_id, school_id, _ = _pairing(api)
    both = api.post(
        "/api/devices", json={"name": "box", "care_home_id": home_id, "school_id": school_id}
    )
    assert both.status_code == 422
    assert "exactly one care home or one school" in both.text
    missing = api.post("/api/devices", json={"name": "box", "care_home_id": 404})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "there is no care home with id 404"}
    _created(api.post("/api/devices", json={"name": "box", "care_home_id": home_id}))
    again = api.post("/api/devices", json={"name": "box", "school_id": school_id})
    assert again.status_code == 409
    assert again.json() == {"detail": "a device named 'box' already exists"}


def test_pairings_are_created_listed_and_pairing_twice_conflicts(api: httpx.Client) -> None:
    home_id, school_id, pairing_id = _pairing(api)
    listed = api.get("/api/pairings").json()
    assert [(p["id"], p["care_home"]["name"], p["school"]["name"]) for p in listed] == [
        (pairing_id, "Rosewood Care Home", "Hillside Primary")
    ]
    again = api.post("/api/pairings", json={"care_home_id": home_id, "school_id": school_id})
    assert again.status_code == 409
    assert (
        "'Rosewood Care Home' and 'Hillside Primary' are already paired" in again.json()["detail"]
    )


def test_sessions_are_created_and_listed_with_their_next_start(
    server: RunningServer, api: httpx.Client
) -> None:
    home_id, school_id, pairing_id = _pairing(api)
    weekly = _weekly(api, pairing_id, "2026-11-03T14:00")
    assert weekly["timezone"] == "Europe/London"
    # The server's clock stands at Tuesday 24 November 13:50 UTC.
    assert weekly["next_starts_at"] == "2026-11-24T14:00:00Z"
    one_off = _created(
        api.post(
            "/api/sessions",
            json={
                "care_home_id": home_id,
                "school_id": school_id,
                "title": "Carols",
                "starts_local": "2026-12-15T10:30",
                "duration_minutes": 60,
                "timezone": "Europe/London",
            },
        )
    )
    assert one_off["pairing_id"] == pairing_id
    assert one_off["rrule"] is None
    listed = api.get("/api/sessions").json()
    assert [(s["title"], s["care_home"]["name"], s["school"]["name"]) for s in listed] == [
        ("Tuesday singing", "Rosewood Care Home", "Hillside Primary"),
        ("Carols", "Rosewood Care Home", "Hillside Primary"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "RRULE 'FREQ=WEEKLY;BYDAY=XX' is not valid"),
        ({"rrule": "FREQ=MINUTELY"}, "sessions repeat at most daily"),
        ({"starts_local": "tomorrow at two"}, "is not a date and time like 2026-11-24T14:00"),
        ({"timezone": "Europe/Londn"}, "unknown time zone 'Europe/Londn'"),
        ({"duration_minutes": 600}, "duration must be 1 to 480 minutes, not 600"),
    ],
)
def test_bad_session_values_get_422_with_a_readable_message(
    api: httpx.Client, change: dict[str, Any], message: str
) -> None:
    _, _, pairing_id = _pairing(api)
    body = {
        "pairing_id": pairing_id,
        "title": "Tuesday singing",
        "starts_local": "2026-11-03T14:00",
        "duration_minutes": 45,
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        **change,
    }
    response = api.post("/api/sessions", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert message in detail
    assert api.get("/api/sessions").json() == []


def test_cancelling_a_time_that_is_not_an_occurrence_is_422(api: httpx.Client) -> None:
    _, _, pairing_id = _pairing(api)
    session = _weekly(api, pairing_id, "2026-11-03T14:00")
    response = api.post(
        f"/api/sessions/{session['id']}/cancellations",
        json={"occurrence_starts_at": "2026-11-25T14:00:00Z", "reason": "wrong day"},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "has no occurrence starting Wed 25 Nov 2026 14:00 Europe/London" in detail
    assert "Tue 24 Nov 2026 14:00" in detail
    unknown = api.post(
        "/api/sessions/999/cancellations", json={"occurrence_starts_at": "2026-11-24T14:00Z"}
    )
    assert unknown.status_code == 404


def test_cancelled_occurrence_leaves_the_schedule_and_is_listed_as_cancelled(
    api: httpx.Client,
) -> None:
    _, _, pairing_id = _pairing(api)
    session = _weekly(api, pairing_id, "2026-11-03T14:00")
    # Without an offset the time is the session's wall-clock time.
    cancellation = _created(
        api.post(
            f"/api/sessions/{session['id']}/cancellations",
            json={"occurrence_starts_at": "2026-12-01T14:00", "reason": "school trip"},
        )
    )
    assert cancellation["occurrence_starts_at"] == "2026-12-01T14:00:00Z"
    again = api.post(
        f"/api/sessions/{session['id']}/cancellations",
        json={"occurrence_starts_at": "2026-12-01T14:00:00+00:00"},
    )
    assert again.status_code == 409
    occurrences = api.get("/api/occurrences", params={"days": 7}).json()
    assert [(o["starts_local"], o["cancelled"], o["cancellation_reason"]) for o in occurrences] == [
        ("2026-11-24T14:00", False, ""),
        ("2026-12-01T14:00", True, "school trip"),
    ]
    listed = api.get("/api/sessions").json()
    assert listed[0]["cancellations"][0]["reason"] == "school trip"


def test_occurrences_keep_local_time_across_the_october_clock_change(
    server: RunningServer, api: httpx.Client
) -> None:
    _, _, pairing_id = _pairing(api)
    _weekly(api, pairing_id, "2026-10-06T14:00")
    server.clock.set(datetime(2026, 10, 19, 9, 0, tzinfo=UTC))
    occurrences = api.get("/api/occurrences", params={"days": 9}).json()
    assert [(o["starts_at"], o["starts_local"]) for o in occurrences] == [
        ("2026-10-20T13:00:00Z", "2026-10-20T14:00"),  # British Summer Time, UTC+1
        ("2026-10-27T14:00:00Z", "2026-10-27T14:00"),  # after 25 October, UTC+0
    ]
    first = occurrences[0]
    assert first["care_home"]["name"] == "Rosewood Care Home"
    assert first["school"]["name"] == "Hillside Primary"
    assert first["ends_local"] == "2026-10-20T14:45"
    assert first["window_opens_at"] == "2026-10-20T12:45:00Z"
    assert first["timezone"] == "Europe/London"


def test_occurrences_default_to_today_and_the_next_seven_days(
    server: RunningServer, api: httpx.Client
) -> None:
    _, _, pairing_id = _pairing(api)
    daily = _created(
        api.post(
            "/api/sessions",
            json={
                "pairing_id": pairing_id,
                "title": "Morning hello",
                "starts_local": "2026-11-20T09:00",
                "duration_minutes": 15,
                "rrule": "FREQ=DAILY",
            },
        )
    )
    days = [o["starts_local"][:10] for o in api.get("/api/occurrences").json()]
    assert days == [
        f"2026-{m:02d}-{d:02d}"
        for m, d in [(11, 24), (11, 25), (11, 26), (11, 27), (11, 28), (11, 29), (11, 30), (12, 1)]
    ]
    assert api.get("/api/occurrences", params={"days": 0}).json()[0]["session_id"] == daily["id"]
    assert len(api.get("/api/occurrences", params={"days": 0}).json()) == 1
    assert api.get("/api/occurrences", params={"days": -1}).status_code == 422


def test_access_codes_are_issued_once_listed_without_secrets_and_revoked(
    server: RunningServer, api: httpx.Client
) -> None:
    _, school_id, _ = _pairing(api)
    issued = _created(api.post(f"/api/schools/{school_id}/access-codes", json={"label": "Year 4"}))
    code = issued["code"]
    assert len(code) == 14 and code.count("-") == 2
    listed = api.get(f"/api/schools/{school_id}/access-codes")
    assert [(c["id"], c["label"], c["revoked_at"]) for c in listed.json()] == [
        (issued["id"], "Year 4", None)
    ]
    assert code not in listed.text and digest(code) not in listed.text
    rows = _database_rows(server.settings, "SELECT code_hash FROM access_codes")
    assert rows == [(digest(code),)]

    revoked = api.post(f"/api/access-codes/{issued['id']}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] == "2026-11-24T13:50:00Z"
    assert api.post(f"/api/access-codes/{issued['id']}/revoke").status_code == 409
    assert api.post("/api/access-codes/999/revoke").status_code == 404
    assert api.get("/api/schools/999/access-codes").status_code == 404
    sign_in = httpx.post(f"{server.url}/api/school/sign-in", json={"code": code})
    assert sign_in.status_code == 401


def test_admin_actions_are_audited_without_tokens_or_codes(
    server: RunningServer, api: httpx.Client
) -> None:
    home_id, school_id, pairing_id = _pairing(api)
    session = _weekly(api, pairing_id, "2026-11-03T14:00")
    device = _created(api.post("/api/devices", json={"name": "box", "care_home_id": home_id}))
    code = _created(api.post(f"/api/schools/{school_id}/access-codes", json={"label": "staff"}))
    api.post(f"/api/access-codes/{code['id']}/revoke")
    api.post(f"/api/devices/{device['id']}/revoke")

    audit = api.get("/api/audit", params={"limit": 100, "event": "admin"})
    entries = audit.json()
    assert [e["detail"]["action"] for e in entries] == [
        "device.revoke",
        "access_code.revoke",
        "access_code.issue",
        "device.register",
        "session.create",
        "pairing.create",
        "school.create",
        "care_home.create",
    ]
    assert all(e["actor"] == "admin" and e["remote"] == "127.0.0.1" for e in entries)
    assert entries[4]["detail"]["session_id"] == session["id"]
    for secret in (device["token"], code["code"], digest(device["token"]), digest(code["code"])):
        assert secret not in audit.text
    stored = _database_rows(server.settings, "SELECT detail FROM audit_log")
    assert len(stored) == len(entries)
    assert device["token"] not in json.dumps(stored)
    assert code["code"] not in json.dumps(stored)
    assert len(api.get("/api/audit", params={"limit": 2}).json()) == 2


# --- the connected parties hear about changes ------------------------------------------------


async def test_new_sessions_reach_a_connected_device_and_revoking_it_disconnects_it(
    server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=server.admin_headers) as api:
        home = (await api.post("/api/care-homes", json={"name": "Rosewood"})).json()
        school = (await api.post("/api/schools", json={"name": "Hillside"})).json()
        device = (
            await api.post("/api/devices", json={"name": "box", "care_home_id": home["id"]})
        ).json()
        async with SignallingClient(server.ws_url) as client:
            await client.hello_device(device["token"])
            await client.expect(Welcome)
            assert (await client.expect(Schedule)).occurrences == []

            created = await api.post(
                "/api/sessions",
                json={
                    "care_home_id": home["id"],
                    "school_id": school["id"],
                    "title": "Singing",
                    "starts_local": "2026-11-24T14:00",
                    "duration_minutes": 45,
                },
            )
            assert created.status_code == 201
            pushed = await client.next_of(Schedule)
            assert [o.title for o in pushed.occurrences] == ["Singing"]

            revoked = await api.post(f"/api/devices/{device['id']}/revoke")
            assert revoked.status_code == 200
            error = await client.next_of(Error)
            assert "revoked" in error.message
            await client.ws.wait_closed()
            assert client.ws.close_code == 1008
