"""Who may enter which room, when. A pure decision: the caller brings the facts and the clock.

A party may enter a session's room only if it is one of that session's two parties and the
occurrence's window is open. Every "no" carries a reason a teacher or technician can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from session_server.protocol import ErrorCode, Occurrence, Party


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    message: str


def _clock_time(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


def _day_and_time(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M}"


def may_enter(
    party: Party,
    occurrence: Occurrence | None,
    *,
    cancelled: bool,
    now: datetime,
    zone: ZoneInfo,
) -> Refusal | None:
    """None when the party may enter; otherwise why not."""
    if occurrence is None:
        return Refusal(ErrorCode.NO_SUCH_ROOM, "there is no such session at that time")
    if party not in (occurrence.care_home, occurrence.school):
        return Refusal(ErrorCode.NOT_YOUR_SESSION, "this session is not one of yours")
    if cancelled:
        return Refusal(ErrorCode.CANCELLED, "this session was cancelled")
    if now < occurrence.window_opens_at:
        opens = occurrence.window_opens_at
        same_day = opens.astimezone(zone).date() == now.astimezone(zone).date()
        when = f"at {_clock_time(opens, zone)}" if same_day else f"on {_day_and_time(opens, zone)}"
        return Refusal(ErrorCode.NOT_OPEN_YET, f"this session opens {when}")
    if now >= occurrence.window_closes_at:
        return Refusal(
            ErrorCode.CLOSED,
            f"this session closed at {_clock_time(occurrence.window_closes_at, zone)}",
        )
    return None
