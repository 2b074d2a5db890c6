"""Rich tables for what the admin API returns, readable by a coordinator at a glance.

Instants from the API are UTC; they are shown as local time of the computer running the command,
except occurrences, which are shown in their session's own time zone (as the rooms live them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table

Row = dict[str, Any]


def when(value: str | None) -> str:
    """An ISO instant as local wall-clock time, or a dash."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def organisations(title: str, rows: list[Row]) -> Table:
    table = _table(title, "ID", "Name", "Added")
    for row in rows:
        table.add_row(str(row["id"]), row["name"], when(row["created_at"]))
    return table


def _owner(row: Row) -> str:
    if row.get("care_home"):
        return f"care home: {row['care_home']['name']}"
    if row.get("school"):
        return f"school: {row['school']['name']}"
    return "-"


def devices(rows: list[Row]) -> Table:
    table = _table("Devices", "ID", "Name", "Belongs to", "Status", "Last seen")
    for row in rows:
        if row["revoked_at"]:
            status = f"revoked {when(row['revoked_at'])}"
        else:
            status = "online" if row.get("online") else "active, not connected"
        table.add_row(str(row["id"]), row["name"], _owner(row), status, when(row["last_seen_at"]))
    return table


def pairings(rows: list[Row]) -> Table:
    table = _table("Pairings", "ID", "Care home", "School", "Added")
    for row in rows:
        table.add_row(
            str(row["id"]), row["care_home"]["name"], row["school"]["name"], when(row["created_at"])
        )
    return table


_DAYS = {"MO": "Mon", "TU": "Tue", "WE": "Wed", "TH": "Thu", "FR": "Fri", "SA": "Sat", "SU": "Sun"}


def repeats(rule: str | None) -> str:
    """A rule in words where it is a plain weekly or daily one; otherwise the rule itself."""
    if not rule:
        return "once"
    parts = dict(p.split("=", 1) for p in rule.upper().split(";") if "=" in p)
    interval = parts.pop("INTERVAL", "1")
    every = "every" if interval == "1" else f"every {interval}"
    days = parts.pop("BYDAY", None)
    freq = parts.pop("FREQ", None)
    if parts:
        return rule
    if freq == "DAILY" and days is None:
        return f"{every} days" if interval != "1" else "every day"
    if freq == "WEEKLY" and days and all(d in _DAYS for d in days.split(",")):
        names = ", ".join(_DAYS[d] for d in days.split(","))
        return f"{every} {names}" if interval == "1" else f"{every} weeks on {names}"
    return rule


def sessions(rows: list[Row]) -> Table:
    table = _table("Sessions", "ID", "Title", "Care home", "School", "When", "Next")
    for row in rows:
        first = datetime.fromisoformat(row["starts_local"])
        table.add_row(
            str(row["id"]),
            row["title"],
            row["care_home"]["name"],
            row["school"]["name"],
            f"{repeats(row['rrule'])} from {first:%Y-%m-%d %H:%M} {row['timezone']}, "
            f"{row['duration_minutes']} min",
            when(row["next_starts_at"]),
        )
    return table


def occurrences(rows: list[Row]) -> Table:
    table = _table(
        "Today and upcoming", "Day", "Time", "Session", "Care home", "School", "Status", "Room"
    )
    for row in rows:
        starts = datetime.fromisoformat(row["starts_local"])
        ends = datetime.fromisoformat(row["ends_local"])
        status = "scheduled"
        if row["cancelled"]:
            reason = row["cancellation_reason"]
            status = f"cancelled ({reason})" if reason else "cancelled"
        table.add_row(
            starts.strftime("%a %d %b"),
            f"{starts:%H:%M}-{ends:%H:%M} {row['timezone']}",
            f"{row['title']} (#{row['session_id']})",
            row["care_home"]["name"],
            row["school"]["name"],
            status,
            row["room"],
        )
    return table


def access_codes(school_name: str, rows: list[Row]) -> Table:
    table = _table(f"Access codes of {school_name}", "ID", "Label", "Issued", "Status")
    for row in rows:
        if row["revoked_at"]:
            status = f"revoked {when(row['revoked_at'])}"
        else:
            status = "online" if row.get("online") else "active, not connected"
        table.add_row(str(row["id"]), row["label"] or "-", when(row["created_at"]), status)
    return table


def audit(rows: list[Row]) -> Table:
    table = _table("Audit log (newest first)", "At", "Event", "Actor", "Room", "From", "Detail")
    for row in rows:
        detail = ", ".join(f"{k}={v}" for k, v in row["detail"].items())
        table.add_row(
            when(row["at"]),
            row["event"],
            row["actor"],
            row["room"] or "-",
            row["remote"] or "-",
            detail,
        )
    return table
