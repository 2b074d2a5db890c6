"""The admin API's request and response bodies. Requests forbid unknown fields, so a typo in a
coordinator's script is an error rather than a silently ignored value; responses never carry a
token, code or hash except the one-time ``token`` / ``code`` of a registration or issue."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from session_server.directory import NAME_MAX, REASON_MAX, TITLE_MAX

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX)]


class ErrorOut(BaseModel):
    """Every refusal: one sentence saying what is wrong and, where it can, what to do."""

    detail: str


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- organisations ---------------------------------------------------------------------------


class NewOrganisation(_Request):
    name: Name


class CareHomeOut(BaseModel):
    id: int
    name: str
    created_at: AwareDatetime


class SchoolOut(BaseModel):
    id: int
    name: str
    created_at: AwareDatetime


class PartyRef(BaseModel):
    id: int
    name: str


# --- devices ---------------------------------------------------------------------------------


class NewDevice(_Request):
    name: Name
    care_home_id: int | None = None
    school_id: int | None = None

    @model_validator(mode="after")
    def _one_owner(self) -> NewDevice:
        if (self.care_home_id is None) == (self.school_id is None):
            raise ValueError("a device belongs to exactly one care home or one school: give one")
        return self


class DeviceOut(BaseModel):
    id: int
    name: str
    care_home: PartyRef | None
    school: PartyRef | None
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None
    last_seen_at: AwareDatetime | None
    online: bool = Field(
        default=False, description="Connected to this server right now (its signalling is up)."
    )


class RegisteredDeviceOut(DeviceOut):
    token: str = Field(description="The device's bearer token. Shown only in this response.")


# --- pairings and sessions -------------------------------------------------------------------


class NewPairing(_Request):
    care_home_id: int
    school_id: int


class PairingOut(BaseModel):
    id: int
    care_home: PartyRef
    school: PartyRef
    created_at: AwareDatetime


class NewSessionIn(_Request):
    """A session of a pairing, or of a care home and a school (paired on the way if need be)."""

    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)
    ]
    starts_local: str = Field(
        max_length=32,
        description="First start, wall-clock time in the session's zone: 2026-11-24T14:00",
    )
    duration_minutes: int
    rrule: str | None = Field(
        default=None, max_length=500, description="RFC 5545 rule, e.g. FREQ=WEEKLY;BYDAY=TU"
    )
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA zone; default: the server's"
    )
    pairing_id: int | None = None
    care_home_id: int | None = None
    school_id: int | None = None


class CancellationOut(BaseModel):
    id: int
    session_id: int
    occurrence_starts_at: AwareDatetime
    reason: str


class SessionOut(BaseModel):
    id: int
    pairing_id: int
    care_home: PartyRef
    school: PartyRef
    title: str
    starts_local: str
    timezone: str
    duration_minutes: int
    rrule: str | None
    next_starts_at: AwareDatetime | None
    cancellations: list[CancellationOut]


class NewCancellation(_Request):
    occurrence_starts_at: datetime = Field(
        description="The occurrence's start: with an offset (2026-11-24T14:00Z), or without one "
        "as wall-clock time in the session's zone (2026-11-24T14:00)"
    )
    reason: str = Field(default="", max_length=REASON_MAX)


class OccurrenceOut(BaseModel):
    room: str
    session_id: int
    title: str
    care_home: PartyRef
    school: PartyRef
    timezone: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    starts_local: str
    ends_local: str
    window_opens_at: AwareDatetime
    window_closes_at: AwareDatetime
    cancelled: bool
    cancellation_reason: str


# --- access codes ----------------------------------------------------------------------------


class NewAccessCode(_Request):
    label: str = Field(default="", max_length=NAME_MAX)


class AccessCodeOut(BaseModel):
    id: int
    school_id: int
    label: str
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None


class IssuedAccessCodeOut(AccessCodeOut):
    code: str = Field(description="The access code. Shown only in this response.")


# --- audit -----------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    at: AwareDatetime
    event: str
    actor: str
    room: str | None
    remote: str | None
    detail: dict[str, Any]
