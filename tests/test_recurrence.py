from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from session_server.errors import InvalidInput
from session_server.recurrence import Recurrence


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekly_session_keeps_local_time_across_autumn_clock_change() -> None:
    # Clocks go back on Sunday 25 October 2026: 14:00 BST is 13:00Z, 14:00 GMT is 14:00Z.
    rule = Recurrence("2026-10-13T14:00", "Europe/London", 45, "FREQ=WEEKLY;BYDAY=TU")
    starts = rule.starts_between(utc(2026, 10, 12), utc(2026, 11, 4))
    assert starts == [
        utc(2026, 10, 13, 13),
        utc(2026, 10, 20, 13),
        utc(2026, 10, 27, 14),
        utc(2026, 11, 3, 14),
    ]


def test_weekly_session_keeps_local_time_across_spring_clock_change() -> None:
    rule = Recurrence("2027-03-23T14:00", "Europe/London", 45, "FREQ=WEEKLY;BYDAY=TU")
    assert rule.starts_between(utc(2027, 3, 22), utc(2027, 4, 1)) == [
        utc(2027, 3, 23, 14),
        utc(2027, 3, 30, 13),
    ]


def test_one_off_session_has_exactly_one_occurrence() -> None:
    rule = Recurrence("2026-11-24T14:00", "Europe/London", 45)
    assert rule.starts_between(utc(2026, 1, 1), utc(2027, 1, 1)) == [utc(2026, 11, 24, 14)]
    assert rule.occurs_at(utc(2026, 11, 24, 14))
    assert not rule.occurs_at(utc(2026, 11, 24, 14, 1))


def test_range_is_half_open_and_counted_limits_are_respected() -> None:
    rule = Recurrence("2026-11-02T10:00", "Europe/London", 30, "FREQ=DAILY;COUNT=3")
    starts = rule.starts_between(utc(2026, 11, 1), utc(2026, 12, 1))
    assert starts == [utc(2026, 11, 2, 10), utc(2026, 11, 3, 10), utc(2026, 11, 4, 10)]
    assert rule.starts_between(utc(2026, 11, 3, 10), utc(2026, 11, 4, 10)) == [utc(2026, 11, 3, 10)]


@pytest.mark.parametrize(
    ("rrule", "needle"),
    [
        ("FREQ=HOURLY", "at most daily"),
        ("FREQ=WEEKLY;BYDAY=XX", "not valid"),
        ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "without DTSTART"),
        ("nonsense", "not valid"),
    ],
)
def test_bad_rules_are_refused_with_a_readable_reason(rrule: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        Recurrence("2026-11-24T14:00", "Europe/London", 45, rrule)


@pytest.mark.parametrize(
    ("start", "zone", "minutes", "needle"),
    [
        ("24/11/2026 14:00", "Europe/London", 45, "not a date and time"),
        ("2026-11-24T14:00+01:00", "Europe/London", 45, "local time"),
        ("2026-11-24T14:00", "Mars/Olympus", 45, "unknown time zone"),
        ("2026-11-24T14:00", "Europe/London", 0, "duration"),
        ("2026-11-24T14:00", "Europe/London", 24 * 60, "duration"),
    ],
)
def test_bad_session_fields_are_refused(start: str, zone: str, minutes: int, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        Recurrence(start, zone, minutes)


def test_far_future_lookup_does_not_walk_from_the_first_start_forever() -> None:
    rule = Recurrence("2026-01-06T14:00", "Europe/London", 45, "FREQ=WEEKLY;BYDAY=TU")
    later = utc(2036, 1, 1)
    starts = rule.starts_between(later, later + timedelta(days=7))
    assert len(starts) == 1
    assert starts[0].astimezone(ZoneInfo("Europe/London")).strftime("%a %H:%M") == "Tue 14:00"
