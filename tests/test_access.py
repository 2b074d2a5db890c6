"""The authorisation decision, as a table: party, occurrence and moment → allowed or why not."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from session_server.access import may_enter
from session_server.protocol import ErrorCode, Occurrence, Party, PartyKind

LONDON = ZoneInfo("Europe/London")
ROSEWOOD = Party(kind=PartyKind.CARE_HOME, id=1, name="Rosewood")
HILLSIDE = Party(kind=PartyKind.SCHOOL, id=1, name="Hillside")
OAKFIELD = Party(kind=PartyKind.SCHOOL, id=2, name="Oakfield")
ELMS = Party(kind=PartyKind.CARE_HOME, id=2, name="The Elms")


def occurrence(start: datetime) -> Occurrence:
    end = start + timedelta(minutes=45)
    return Occurrence(
        room="s1@" + start.strftime("%Y%m%dT%H%MZ"),
        session_id=1,
        title="Singing",
        starts_at=start,
        ends_at=end,
        window_opens_at=start - timedelta(minutes=15),
        window_closes_at=end + timedelta(minutes=10),
        care_home=ROSEWOOD,
        school=HILLSIDE,
    )


START = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
OCC = occurrence(START)


@pytest.mark.parametrize(
    ("party", "now", "cancelled", "expected"),
    [
        (ROSEWOOD, START - timedelta(minutes=15), False, None),
        (HILLSIDE, START + timedelta(minutes=54, seconds=59), False, None),
        (OAKFIELD, START, False, ErrorCode.NOT_YOUR_SESSION),
        (ELMS, START, False, ErrorCode.NOT_YOUR_SESSION),
        (HILLSIDE, START - timedelta(minutes=15, seconds=1), False, ErrorCode.NOT_OPEN_YET),
        (HILLSIDE, START + timedelta(minutes=55), False, ErrorCode.CLOSED),
        (ROSEWOOD, START, True, ErrorCode.CANCELLED),
    ],
)
def test_who_may_enter_when(
    party: Party, now: datetime, cancelled: bool, expected: ErrorCode | None
) -> None:
    refusal = may_enter(party, OCC, cancelled=cancelled, now=now, zone=LONDON)
    assert (refusal.code if refusal else None) == expected


def test_no_occurrence_is_no_such_room() -> None:
    refusal = may_enter(HILLSIDE, None, cancelled=False, now=START, zone=LONDON)
    assert refusal is not None and refusal.code is ErrorCode.NO_SUCH_ROOM


def test_early_join_says_when_the_session_opens_in_local_time() -> None:
    summer = occurrence(datetime(2026, 7, 7, 13, 0, tzinfo=UTC))  # 14:00 BST
    refusal = may_enter(
        HILLSIDE, summer, cancelled=False, now=summer.starts_at - timedelta(hours=1), zone=LONDON
    )
    assert refusal is not None
    assert refusal.message == "this session opens at 13:45"


def test_early_join_on_another_day_names_the_day() -> None:
    refusal = may_enter(HILLSIDE, OCC, cancelled=False, now=START - timedelta(days=2), zone=LONDON)
    assert refusal is not None
    assert refusal.message == "this session opens on Tuesday 24 November at 13:45"


def test_late_join_says_when_it_closed() -> None:
    refusal = may_enter(HILLSIDE, OCC, cancelled=False, now=START + timedelta(hours=2), zone=LONDON)
    assert refusal is not None
    assert refusal.message == "this session closed at 14:55"
