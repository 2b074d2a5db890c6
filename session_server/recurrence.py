"""Occurrences of one-off and recurring sessions, in local wall-clock time.

A recurring session is "every Tuesday at 14:00 for 45 minutes, Europe/London": the rule is expanded
in local time and only then turned into UTC, so 14:00 stays 14:00 when the clocks change (the UTC
start moves from 14:00 to 13:00 across the spring change, not the other way round).

    >>> rule = Recurrence("2026-03-24T14:00", "Europe/London", 45, "FREQ=WEEKLY;BYDAY=TU")
    >>> [o.isoformat() for o in rule.starts_between(datetime(2026, 3, 24, tzinfo=UTC),
    ...                                             datetime(2026, 4, 1, tzinfo=UTC))]
    ['2026-03-24T14:00:00+00:00', '2026-03-31T13:00:00+00:00']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

from session_server.errors import InvalidInput

_ALLOWED_FREQUENCIES = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_FREQ = re.compile(r"(?:^|;)FREQ=([A-Z]+)")
_LONGEST_SESSION_MINUTES = 8 * 60


def parse_local_start(text: str) -> datetime:
    """A wall-clock start such as ``2026-11-24T14:00`` (no offset: the session's zone applies)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"start {text!r} is not a date and time like 2026-11-24T14:00") from exc
    if value.tzinfo is not None:
        raise InvalidInput(
            f"start {text!r} has a UTC offset; give local time (the session's time zone applies)"
        )
    return value.replace(second=0, microsecond=0)


def parse_rule(text: str, first_start: datetime) -> rrule:
    """Parse an RFC 5545 RRULE (without DTSTART); refuse rules that repeat faster than daily."""
    body = text.strip().removeprefix("RRULE:")
    if "DTSTART" in body.upper():
        raise InvalidInput("give the rule without DTSTART; the session's start is its DTSTART")
    try:
        rule = rrulestr(body, dtstart=first_start)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"RRULE {text!r} is not valid: {exc}") from exc
    if not isinstance(rule, rrule):
        raise InvalidInput(f"RRULE {text!r} must be a single rule")
    frequency = _FREQ.search(body.upper())
    if frequency is None or frequency.group(1) not in _ALLOWED_FREQUENCIES:
        raise InvalidInput("sessions repeat at most daily: use FREQ=DAILY, WEEKLY or MONTHLY")
    return rule


@dataclass(frozen=True)
class Recurrence:
    """When a session meets. All arguments are as stored on the session row."""

    starts_local: str
    timezone: str
    duration_minutes: int
    rrule: str | None = None

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone {self.timezone!r}") from exc
        if not 1 <= self.duration_minutes <= _LONGEST_SESSION_MINUTES:
            raise InvalidInput(
                f"duration must be 1 to {_LONGEST_SESSION_MINUTES} minutes, "
                f"not {self.duration_minutes}"
            )
        first = parse_local_start(self.starts_local)
        if self.rrule:
            parse_rule(self.rrule, first)

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def _local_starts(self, after_local: datetime) -> Iterator[datetime]:
        first = parse_local_start(self.starts_local)
        if not self.rrule:
            if first >= after_local:
                yield first
            return
        yield from parse_rule(self.rrule, first).xafter(after_local, inc=True)

    def _to_utc(self, local: datetime) -> datetime:
        # fold=0: an ambiguous autumn 01:30 means the first one; a spring-gap time that does not
        # exist is read with the offset before the gap, as zoneinfo does, and lands an hour later.
        return local.replace(tzinfo=ZoneInfo(self.timezone)).astimezone(UTC)

    def starts_between(self, start: datetime, end: datetime) -> list[datetime]:
        """UTC starts of occurrences that begin in [start, end)."""
        zone = ZoneInfo(self.timezone)
        # Widen by a day in local time: offsets differ by at most a few hours.
        after_local = start.astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
        result: list[datetime] = []
        for local in self._local_starts(after_local):
            utc = self._to_utc(local)
            if utc >= end:
                break
            if utc >= start:
                result.append(utc)
        return result

    def occurs_at(self, start: datetime) -> bool:
        """Whether an occurrence starts exactly at this UTC minute."""
        start = start.astimezone(UTC).replace(second=0, microsecond=0)
        return start in self.starts_between(start, start + timedelta(minutes=1))
