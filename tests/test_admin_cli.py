"""``twm-server admin …`` run in-process (Typer's CliRunner) against a real running server."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from session_server.cli.main import app
from tests.conftest import ADMIN_TOKEN, RunningServer, free_port

CODE = re.compile(r"\b[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}\b")
TOKEN = re.compile(r"twmd_[A-Za-z0-9_-]{40,}")


class Admin:
    """Runs admin commands the way a coordinator's shell would: server and token from the env."""

    def __init__(self, url: str, token: str | None = ADMIN_TOKEN) -> None:
        self.env = {"TWM_SERVER_URL": url, "COLUMNS": "200"}
        if token is not None:
            self.env["TWM_SERVER_ADMIN_TOKEN"] = token
        self.runner = CliRunner()

    def run(self, *args: str) -> Result:
        return self.runner.invoke(app, ["admin", *args], env=self.env)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def fails(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        return " ".join(result.stderr.split())  # one line, whatever the terminal width


@pytest.fixture
def admin(server: RunningServer) -> Admin:
    return Admin(server.url)


@pytest.fixture
def paired(admin: Admin) -> Admin:
    admin.ok("care-homes", "add", "Rosewood Care Home")
    admin.ok("schools", "add", "Hillside Primary")
    admin.ok("pairings", "add", "--care-home", "rosewood care home", "--school", "Hillside Primary")
    return admin


def test_organisations_are_added_and_listed_in_tables(admin: Admin) -> None:
    assert "Added care home 'Rosewood Care Home' (id 1)" in admin.ok(
        "care-homes", "add", "Rosewood Care Home"
    )
    admin.ok("care-homes", "add", "Oakfield House")
    assert "Added school 'Hillside Primary' (id 1)" in admin.ok(
        "schools", "add", "Hillside Primary"
    )
    homes = admin.ok("care-homes", "list")
    assert "Care homes" in homes
    assert re.search(r"│ 2\s+│ Oakfield House\s+│", homes)
    assert re.search(r"│ 1\s+│ Rosewood Care Home\s+│", homes)
    assert "Hillside Primary" in admin.ok("schools", "list")


def test_pairing_by_name_and_its_table(paired: Admin) -> None:
    table = paired.ok("pairings", "list")
    assert re.search(r"│ 1\s+│ Rosewood Care Home\s+│ Hillside Primary\s+│", table)


def test_device_token_is_printed_once_and_never_listed(paired: Admin) -> None:
    added = paired.ok("devices", "add", "rosewood-lounge", "--care-home", "Rosewood Care Home")
    assert "Registered device 'rosewood-lounge' (id 1) for 'Rosewood Care Home'" in added
    assert "shown only this once" in added
    tokens = TOKEN.findall(added)
    assert len(tokens) == 1
    listed = paired.ok("devices", "list")
    assert re.search(
        r"│ 1\s+│ rosewood-lounge\s+│ care home: Rosewood Care Home\s+│ active", listed
    )
    assert tokens[0] not in listed
    assert "Revoked device 'rosewood-lounge' (id 1)" in paired.ok("devices", "revoke", "1")
    assert "revoked" in paired.ok("devices", "list")


def test_device_token_can_go_straight_to_a_private_file(paired: Admin, tmp_path: Path) -> None:
    target = tmp_path / "box.token"
    output = paired.ok("devices", "add", "box", "--school", "1", "--save-token", str(target))
    token = target.read_text().strip()
    assert TOKEN.fullmatch(token)
    assert token not in output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_sessions_occurrences_and_a_cancellation_in_local_time(paired: Admin) -> None:
    added = paired.ok(
        "sessions",
        "add",
        "--care-home",
        "Rosewood Care Home",
        "--school",
        "Hillside Primary",
        "--title",
        "Tuesday singing",
        "--start",
        "2026-10-06 14:00",
        "--minutes",
        "45",
        "--rrule",
        "FREQ=WEEKLY;BYDAY=TU",
    )
    assert "Scheduled 'Tuesday singing' (session 1)" in added
    sessions = paired.ok("sessions", "list")
    assert "every Tue from 2026-10-06 14:00 Europe/London, 45 min" in sessions
    # The server's clock: Tuesday 24 November 2026, 13:50 UTC.
    assert "2026-11-24 14:00" in sessions

    cancelled = paired.ok(
        "sessions", "cancel", "1", "--at", "2026-12-01T14:00", "--reason", "school trip"
    )
    assert "Cancelled the occurrence of session 1" in cancelled
    table = paired.ok("occurrences")
    rows = [line for line in table.splitlines() if "Tuesday singing" in line]
    assert len(rows) == 2
    assert re.search(r"Tue 24 Nov\s+│ 14:00-14:45 Europe/London\s+│.*│ scheduled", rows[0])
    assert re.search(
        r"Tue 01 Dec\s+│ 14:00-14:45 Europe/London\s+│.*│ cancelled \(school trip\)", rows[1]
    )
    assert "Rosewood Care Home" in rows[0] and "Hillside Primary" in rows[0]
    assert "s1@20261124T1400Z" in rows[0]
    assert "No sessions today or in the next 0 days" not in paired.ok("occurrences", "--days", "0")


def test_no_occurrences_says_so(admin: Admin) -> None:
    assert "No sessions today or in the next 3 days." in admin.ok("occurrences", "--days", "3")


def test_access_codes_are_issued_once_listed_without_codes_and_revoked(paired: Admin) -> None:
    issued = paired.ok("access-codes", "issue", "--school", "Hillside Primary", "--label", "Year 4")
    codes = CODE.findall(issued)
    assert len(codes) == 1
    listed = paired.ok("access-codes", "list", "--school", "1")
    assert "Access codes of Hillside Primary" in listed
    assert re.search(r"│ 1\s+│ Year 4\s+│ .* │ active", listed)
    assert codes[0] not in listed
    assert "Revoked access code 1 (Year 4)" in paired.ok("access-codes", "revoke", "1")
    assert "revoked" in paired.ok("access-codes", "list", "--school", "Hillside Primary")
    assert codes[0] not in paired.ok("audit")


def test_server_refusals_print_its_detail_and_exit_1(paired: Admin) -> None:
    assert "a care home named 'Rosewood Care Home' already exists [HTTP 409]" in paired.fails(
        "care-homes", "add", "Rosewood Care Home"
    )
    bad_rule = paired.fails(
        "sessions", "add", "--pairing", "1", "--title", "x", "--start", "2026-11-24T14:00",
        "--rrule", "FREQ=WEEKLY;BYDAY=XX",
    )  # fmt: skip
    assert "RRULE 'FREQ=WEEKLY;BYDAY=XX' is not valid" in bad_rule
    assert "[HTTP 422]" in bad_rule
    unknown_session = paired.fails("sessions", "cancel", "1", "--at", "2026-11-24T14:00")
    assert "no session with id 1 [HTTP 404]" in unknown_session
    unknown = paired.fails("devices", "add", "box", "--care-home", "Nowhere House")
    assert "there is no care home 'Nowhere House' (known: 'Rosewood Care Home')" in unknown
    both = paired.fails("devices", "add", "box", "--care-home", "1", "--school", "1")
    assert "give exactly one of --care-home or --school" in both
    assert "[HTTP 404]" in paired.fails("devices", "revoke", "77")


def test_wrong_or_missing_admin_token_is_explained(server: RunningServer) -> None:
    wrong = Admin(server.url, token="not-the-token").fails("schools", "list")
    assert "admin token missing or wrong" in wrong
    assert "[HTTP 401]" in wrong
    assert "not-the-token" not in wrong
    missing = Admin(server.url, token=None).fails("schools", "list")
    assert "no admin token: set TWM_SERVER_ADMIN_TOKEN" in missing


def test_help_never_shows_the_admin_token(admin: Admin) -> None:
    result = admin.run("--help")
    assert result.exit_code == 0
    assert "TWM_SERVER_ADMIN_TOKEN" in result.output
    assert ADMIN_TOKEN not in result.output


def test_unreachable_server_names_the_address_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    message = Admin(url).fails("occurrences")
    assert f"cannot reach the session server at {url}" in message
    assert "twm-server serve" in message
