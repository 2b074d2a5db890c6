"""What a box knows of its own registration: ``/etc/twm/enrollment.json`` (no secret in it).

    record = await read_enrollment(box)   # None on a box never enrolled
    record.device_id                      # which device at the server is this box

Written together with the token, so ``check`` and ``update`` know which device entry at the
server to look at without the technician telling them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioning.errors import RemoteFailed
from provisioning.remote import Remote
from session_server.protocol import PartyKind

ENROLLMENT_PATH = "/etc/twm/enrollment.json"


class Enrollment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: int = Field(ge=1)
    name: str = Field(min_length=1)
    server: str = Field(min_length=1, description="the admin API's base address")
    role: PartyKind
    party_id: int = Field(ge=1)
    enrolled_at: datetime


async def read_enrollment(box: Remote) -> Enrollment | None:
    text = await box.read_text(ENROLLMENT_PATH, root=True)
    if text is None:
        return None
    try:
        return Enrollment.model_validate_json(text)
    except ValidationError:
        raise RemoteFailed(
            f"{ENROLLMENT_PATH} on {box.target} is damaged: run enroll again"
        ) from None


async def write_enrollment(box: Remote, record: Enrollment) -> None:
    await box.write_file(ENROLLMENT_PATH, record.model_dump_json(indent=2) + "\n", mode="0644")
