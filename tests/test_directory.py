"""The coordinators' directory against a real, migrated SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from session_server import directory
from session_server.credentials import digest
from session_server.db.engine import DbSession, create_engine, migrate, session_factory
from session_server.db.models import AccessCode, Device
from session_server.directory import NewSession
from session_server.errors import Conflict, InvalidInput, NotFound
from session_server.schedule import Window

WINDOW = Window(before=timedelta(minutes=15), after=timedelta(minutes=10))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[DbSession]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'directory.sqlite3'}")
    await migrate(engine)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def _pair(db: DbSession) -> tuple[int, int, int]:
    home = await directory.create_care_home(db, "Rosewood Care Home")
    school = await directory.create_school(db, "Hillside Primary")
    pairing = await directory.create_pairing(db, home.id, school.id)
    return home.id, school.id, pairing.id


def _weekly(pairing_id: int, starts_local: str = "2026-10-06T14:00") -> NewSession:
    return NewSession(
        title="Tuesday singing",
        starts_local=starts_local,
        duration_minutes=45,
        rrule="FREQ=WEEKLY;BYDAY=TU",
        pairing_id=pairing_id,
    )


async def test_names_are_tidied_and_duplicates_conflict_naming_the_clash(db: DbSession) -> None:
    home = await directory.create_care_home(db, "  Rosewood   Care Home ")
    assert home.name == "Rosewood Care Home"
    with pytest.raises(Conflict, match="a care home named 'Rosewood Care Home' already exists"):
        await directory.create_care_home(db, "Rosewood Care Home")
    await directory.create_school(db, "Hillside Primary")
    with pytest.raises(Conflict, match="school named 'Hillside Primary'"):
        await directory.create_school(db, "Hillside Primary")
    with pytest.raises(InvalidInput, match="must not be empty"):
        await directory.create_school(db, "   ")
    assert [h.name for h in await directory.list_care_homes(db)] == ["Rosewood Care Home"]


async def test_device_token_is_returned_once_and_only_its_digest_stored(db: DbSession) -> None:
    home_id, _, _ = await _pair(db)
    registered = await directory.register_device(db, "rosewood-box", care_home_id=home_id)
    assert registered.token.startswith("twmd_")
    assert registered.token not in repr(registered)
    row = await db.scalar(select(Device).where(Device.name == "rosewood-box"))
    assert row is not None
    assert row.token_hash == digest(registered.token)
    assert row.token_hash != registered.token
    assert row.care_home is not None and row.care_home.name == "Rosewood Care Home"


async def test_device_needs_exactly_one_existing_owner(db: DbSession) -> None:
    home_id, school_id, _ = await _pair(db)
    with pytest.raises(InvalidInput, match="exactly one"):
        await directory.register_device(db, "box", care_home_id=home_id, school_id=school_id)
    with pytest.raises(InvalidInput, match="exactly one"):
        await directory.register_device(db, "box")
    with pytest.raises(NotFound, match="no care home with id 999"):
        await directory.register_device(db, "box", care_home_id=999)
    await directory.register_device(db, "box", school_id=school_id)
    with pytest.raises(Conflict, match="device named 'box'"):
        await directory.register_device(db, "box", care_home_id=home_id)


async def test_revoking_a_device_twice_conflicts(db: DbSession) -> None:
    home_id, _, _ = await _pair(db)
    device = (await directory.register_device(db, "box", care_home_id=home_id)).device
    now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    assert (await directory.revoke_device(db, device.id, now)).revoked_at == now
    with pytest.raises(Conflict, match="already revoked"):
        await directory.revoke_device(db, device.id, now)
    with pytest.raises(NotFound):
        await directory.revoke_device(db, 42, now)


async def test_reissued_token_replaces_the_old_digest(db: DbSession) -> None:
    home_id, _, _ = await _pair(db)
    first = await directory.register_device(db, "box", care_home_id=home_id)
    second = await directory.reissue_device_token(db, first.device.id)
    assert second.token != first.token
    row = await directory.get_device(db, first.device.id)
    assert row.token_hash == digest(second.token)


async def test_pairing_twice_conflicts_with_both_names(db: DbSession) -> None:
    home_id, school_id, pairing_id = await _pair(db)
    with pytest.raises(
        Conflict, match=f"'Rosewood Care Home' and 'Hillside Primary'.*{pairing_id}"
    ):
        await directory.create_pairing(db, home_id, school_id)


async def test_session_by_parties_reuses_or_creates_their_pairing(db: DbSession) -> None:
    home_id, school_id, pairing_id = await _pair(db)
    session = await directory.create_session(
        db,
        NewSession(
            title="Carols",
            starts_local="2026-12-15T10:30:00",
            duration_minutes=60,
            care_home_id=home_id,
            school_id=school_id,
        ),
        default_timezone="Europe/London",
    )
    assert session.pairing_id == pairing_id
    assert session.starts_local == "2026-12-15T10:30"
    assert session.timezone == "Europe/London"
    assert session.rrule is None
    other = await directory.create_school(db, "Brook Lane Academy")
    second = await directory.create_session(
        db,
        NewSession(
            title="Spring songs",
            starts_local="2027-03-02T14:00",
            duration_minutes=30,
            care_home_id=home_id,
            school_id=other.id,
            timezone="Europe/Dublin",
        ),
        default_timezone="Europe/London",
    )
    assert second.pairing.school.name == "Brook Lane Academy"
    assert second.timezone == "Europe/Dublin"
    assert len(await directory.list_pairings(db)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rrule": "FREQ=FORTNIGHTLY"}, "RRULE 'FREQ=FORTNIGHTLY' is not valid"),
        ({"rrule": "FREQ=HOURLY"}, "at most daily"),
        ({"rrule": "FREQ=WEEKLY;UNTIL=20200101T000000"}, "never happens"),
        ({"starts_local": "next tuesday"}, "not a date and time like 2026-11-24T14:00"),
        ({"starts_local": "2026-11-24T14:00+01:00"}, "has a UTC offset"),
        ({"duration_minutes": 0}, "duration must be 1 to"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"title": ""}, "title must not be empty"),
        ({"pairing_id": None}, "give a pairing, or both a care home and a school"),
    ],
)
async def test_bad_sessions_are_refused_with_a_readable_reason(
    db: DbSession, change: dict[str, object], message: str
) -> None:
    _, _, pairing_id = await _pair(db)
    fields: dict[str, object] = {
        "title": "Tuesday singing",
        "starts_local": "2026-10-06T14:00",
        "duration_minutes": 45,
        "rrule": "FREQ=WEEKLY;BYDAY=TU",
        "pairing_id": pairing_id,
        **change,
    }
    with pytest.raises(InvalidInput, match=message):
        await directory.create_session(
            db,
            NewSession(**fields),  # type: ignore[arg-type]
            default_timezone="Europe/London",
        )
    assert await directory.list_sessions(db) == []


async def test_session_for_unknown_pairing_is_not_found(db: DbSession) -> None:
    with pytest.raises(NotFound, match="no pairing with id 7"):
        await directory.create_session(db, _weekly(7), default_timezone="Europe/London")


async def test_weekly_session_keeps_local_time_across_the_october_clock_change(
    db: DbSession,
) -> None:
    _, _, pairing_id = await _pair(db)
    await directory.create_session(db, _weekly(pairing_id), default_timezone="Europe/London")
    start = datetime(2026, 10, 19, tzinfo=UTC)
    listed = await directory.list_occurrences(db, start, start + timedelta(days=14), WINDOW)
    starts = [x.occurrence.starts_at for x in listed]
    # British Summer Time ends on Sunday 25 October 2026.
    assert starts == [
        datetime(2026, 10, 20, 13, 0, tzinfo=UTC),
        datetime(2026, 10, 27, 14, 0, tzinfo=UTC),
    ]
    assert {x.timezone for x in listed} == {"Europe/London"}
    assert listed[0].occurrence.care_home.name == "Rosewood Care Home"
    assert listed[0].occurrence.school.name == "Hillside Primary"


async def test_cancelled_occurrence_is_listed_as_cancelled(db: DbSession) -> None:
    _, _, pairing_id = await _pair(db)
    session = await directory.create_session(
        db, _weekly(pairing_id), default_timezone="Europe/London"
    )
    # Named in local time (no offset): 14:00 London on 3 November is 14:00 UTC.
    cancellation = await directory.cancel_occurrence(
        db, session.id, datetime(2026, 11, 3, 14, 0), "half term"
    )
    assert cancellation.occurrence_starts_at == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    start = datetime(2026, 11, 2, tzinfo=UTC)
    listed = await directory.list_occurrences(db, start, start + timedelta(days=9), WINDOW)
    assert [(x.occurrence.starts_at.day, x.cancelled, x.cancellation_reason) for x in listed] == [
        (3, True, "half term"),
        (10, False, ""),
    ]
    with pytest.raises(Conflict, match="already cancelled"):
        await directory.cancel_occurrence(db, session.id, datetime(2026, 11, 3, 14, 0, tzinfo=UTC))


async def test_cancelling_a_time_that_is_no_occurrence_says_when_they_are(
    db: DbSession,
) -> None:
    _, _, pairing_id = await _pair(db)
    session = await directory.create_session(
        db, _weekly(pairing_id), default_timezone="Europe/London"
    )
    with pytest.raises(InvalidInput) as caught:
        # 14:00 UTC on 20 October is 15:00 in London summer time: not when the session meets.
        await directory.cancel_occurrence(db, session.id, datetime(2026, 10, 20, 14, 0, tzinfo=UTC))
    message = str(caught.value)
    assert "has no occurrence starting Tue 20 Oct 2026 15:00 Europe/London" in message
    assert "Tue 20 Oct 2026 14:00" in message
    with pytest.raises(NotFound, match="no session with id 99"):
        await directory.cancel_occurrence(db, 99, datetime(2026, 10, 20, 13, 0, tzinfo=UTC))


async def test_next_start_skips_cancelled_occurrences(db: DbSession) -> None:
    _, _, pairing_id = await _pair(db)
    session = await directory.create_session(
        db, _weekly(pairing_id, "2026-11-24T14:00"), default_timezone="Europe/London"
    )
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert directory.next_start(session, now) == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    await directory.cancel_occurrence(db, session.id, datetime(2026, 11, 24, 14, 0, tzinfo=UTC))
    assert directory.next_start(session, now) == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


async def test_access_code_is_returned_once_revocable_and_stored_hashed(db: DbSession) -> None:
    _, school_id, _ = await _pair(db)
    issued = await directory.issue_access_code(db, school_id, "Year 4 teachers")
    assert issued.code not in repr(issued)
    row = await db.scalar(select(AccessCode).where(AccessCode.school_id == school_id))
    assert row is not None and row.code_hash == digest(issued.code)
    assert row.label == "Year 4 teachers"
    now = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    await directory.revoke_access_code(db, issued.access_code.id, now)
    with pytest.raises(Conflict, match="already revoked"):
        await directory.revoke_access_code(db, issued.access_code.id, now)
    codes = await directory.list_access_codes(db, school_id)
    assert [c.revoked_at for c in codes] == [now]
    with pytest.raises(NotFound, match="no school with id 5"):
        await directory.issue_access_code(db, 5)


def test_local_day_bounds_cover_today_and_the_following_days_in_local_time() -> None:
    # 23:30 UTC on 24 June is already 25 June in London (UTC+1).
    now = datetime(2026, 6, 24, 23, 30, tzinfo=UTC)
    start, end = directory.local_day_bounds(now, "Europe/London", 7)
    assert start == datetime(2026, 6, 24, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 7, 2, 23, 0, tzinfo=UTC)
