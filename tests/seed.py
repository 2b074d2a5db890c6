"""Seeding a running server through its admin REST API, as a coordinator would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Pair:
    """A care home and a school with a session, a device on each side and a school access code."""

    care_home_id: int
    school_id: int
    session_id: int
    care_home_token: str
    school_device_token: str
    access_code: str
    access_code_id: int
    care_home_device_id: int


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise AssertionError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


def seed_pair(
    url: str,
    headers: dict[str, str],
    *,
    tag: str = "",
    starts_local: str = "2026-11-24T14:00",
    duration_minutes: int = 45,
    rrule: str | None = None,
) -> Pair:
    with httpx.Client(base_url=url, headers=headers) as client:
        home = _ok(client.post("/api/care-homes", json={"name": f"Rosewood{tag}"}))
        school = _ok(client.post("/api/schools", json={"name": f"Hillside{tag}"}))
        pairing = _ok(
            client.post(
                "/api/pairings", json={"care_home_id": home["id"], "school_id": school["id"]}
            )
        )
        body: dict[str, Any] = {
            "pairing_id": pairing["id"],
            "title": f"Singing together{tag}",
            "starts_local": starts_local,
            "duration_minutes": duration_minutes,
        }
        if rrule:
            body["rrule"] = rrule
        session = _ok(client.post("/api/sessions", json=body))
        home_device = _ok(
            client.post(
                "/api/devices", json={"name": f"rosewood{tag}-box", "care_home_id": home["id"]}
            )
        )
        school_device = _ok(
            client.post(
                "/api/devices", json={"name": f"hillside{tag}-box", "school_id": school["id"]}
            )
        )
        code = _ok(
            client.post(f"/api/schools/{school['id']}/access-codes", json={"label": "class"})
        )
    return Pair(
        care_home_id=home["id"],
        school_id=school["id"],
        session_id=session["id"],
        care_home_token=home_device["token"],
        school_device_token=school_device["token"],
        access_code=code["code"],
        access_code_id=code["id"],
        care_home_device_id=home_device["id"],
    )
