"""The box's recent errors, from ``journalctl -o json`` (one JSON object a line), typed here.

entries = await last_errors(box)     # the newest last
entries[-1].message                  # "no microphone named 'Jabra' — found: …"
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from provisioning.remote import Remote
from provisioning.service import UNIT

MESSAGE_MAX = 300


class JournalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    priority: int
    message: str
    identifier: str = ""  # SYSLOG_IDENTIFIER: "systemd" for systemd's own words about the unit
    cursor: str = ""


def _message(raw: object) -> str | None:
    # journald stores a message that is not valid UTF-8 as a list of byte values.
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw).decode("utf-8", errors="replace")
    return None


def parse_journal_json(text: str) -> list[JournalEntry]:
    """Entries journalctl printed; lines that are not entries are left out, not fatal."""
    entries = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        message = _message(record.get("MESSAGE"))
        stamp = record.get("__REALTIME_TIMESTAMP")
        if message is None or not isinstance(stamp, str) or not stamp.isdigit():
            continue
        try:
            entries.append(
                JournalEntry(
                    at=datetime.fromtimestamp(int(stamp) / 1_000_000, tz=UTC),
                    priority=int(record.get("PRIORITY", 6)),
                    message=message.strip()[:MESSAGE_MAX],
                    identifier=str(record.get("SYSLOG_IDENTIFIER", "")),
                    cursor=str(record.get("__CURSOR", "")),
                )
            )
        except (ValueError, ValidationError):
            continue
    return entries


async def last_errors(box: Remote, count: int = 5) -> list[JournalEntry]:
    result = await box.run(
        ["journalctl", "-u", UNIT, "-p", "err", "-n", str(count), "-o", "json", "--no-pager"],
        root=True,
        check=False,
    )
    return parse_journal_json(result.stdout)


async def cursor(box: Remote) -> str | None:
    """Where the service's journal ends now: ``output_since`` reads what comes after."""
    result = await box.run(
        ["journalctl", "-u", UNIT, "-n", "1", "-o", "json", "--no-pager"], root=True, check=False
    )
    entries = parse_journal_json(result.stdout)
    return entries[-1].cursor if entries and entries[-1].cursor else None


async def output_since(box: Remote, after: str | None, count: int = 3) -> list[JournalEntry]:
    """The last lines the service itself wrote (not systemd's notes on it) after ``after``."""
    argv = ["journalctl", "-u", UNIT, "-o", "json", "--no-pager", "-n", "200"]
    if after:
        argv.append(f"--after-cursor={after}")
    result = await box.run(argv, root=True, check=False)
    own = [e for e in parse_journal_json(result.stdout) if e.identifier != "systemd" and e.message]
    return own[-count:]
