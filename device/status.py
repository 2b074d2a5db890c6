"""The box's status file: written by the running agent, read by ``twm-device status``.

It lives in the runtime directory (tmpfs), holds no secrets, and is replaced atomically so a
reader never sees half of it.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from device.lifecycle.states import State
from session_server.protocol import Occurrence, Party

STATUS_FILE = "status.json"
MAX_ERRORS = 10


class LoggedError(BaseModel):
    at: AwareDatetime
    message: str


class ReceiveStatus(BaseModel):
    """How the other room's audio is received: which path, and its buffer's figures."""

    path: Literal["music", "stock"]
    delay_ms: float  # audio waiting for the speaker now
    target_ms: float  # what the buffer aims to hold
    jitter_ms: float | None = None  # the measured jitter allowance (music path)
    underruns: int = 0
    late: int = 0  # packets that came after their turn (music path)
    concealed: int = 0  # lost audio filled in (music path)
    dropped_ms: float = 0.0  # audio skipped to keep the delay down


class AudioStatus(BaseModel):
    input: str
    output: str
    input_dbfs: float | None = None
    output_dbfs: float | None = None
    receive: ReceiveStatus | None = None


class Status(BaseModel):
    pid: int
    updated_at: AwareDatetime
    state: State
    server_url: str
    server_up: bool
    party: Party | None = None
    room: str | None = None
    on_air: bool = False
    muted: bool = False
    volume: int = 0
    fault: str | None = None
    next_session: Occurrence | None = None
    audio: AudioStatus | None = None
    errors: list[LoggedError] = Field(default_factory=list)


def write(directory: Path, status: Status) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".status-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(status.model_dump_json(indent=2))
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / STATUS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(directory: Path) -> Status | None:
    """The last status written, or None when no agent has written one (or it is unreadable)."""
    try:
        return Status.model_validate_json((directory / STATUS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError):
        return None


def remember_error(errors: list[LoggedError], at: datetime, message: str) -> list[LoggedError]:
    return [*errors, LoggedError(at=at, message=message)][-MAX_ERRORS:]
