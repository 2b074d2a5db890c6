"""Short-lived tickets for the school page, signed by the server (no table needed).

A ticket names the school and the access code it came from, so revoking the code ends every
ticket made from it at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Ticket:
    school_id: int
    access_code_id: int
    expires_at: datetime


class TicketError(ValueError):
    """The ticket is forged, damaged or expired; the page must sign in again."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(ticket: Ticket, key: bytes) -> str:
    body = _b64(
        json.dumps(
            {
                "s": ticket.school_id,
                "c": ticket.access_code_id,
                "e": int(ticket.expires_at.timestamp()),
            }
        ).encode()
    )
    signature = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def verify(text: str, key: bytes, now: datetime) -> Ticket:
    try:
        body, signature = text.split(".")
        expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            raise TicketError("the ticket is not valid: sign in again")
        fields = json.loads(_unb64(body))
        ticket = Ticket(
            school_id=int(fields["s"]),
            access_code_id=int(fields["c"]),
            expires_at=datetime.fromtimestamp(int(fields["e"]), UTC),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TicketError("the ticket is not valid: sign in again") from exc
    if now >= ticket.expires_at:
        raise TicketError("the ticket has expired: sign in again")
    return ticket
