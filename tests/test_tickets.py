from datetime import UTC, datetime, timedelta

import pytest

from session_server.tickets import Ticket, TicketError, issue, verify

KEY = b"k" * 32
NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def test_a_ticket_round_trips_until_it_expires() -> None:
    text = issue(Ticket(3, 7, NOW + timedelta(hours=1)), KEY)
    assert verify(text, KEY, NOW) == Ticket(3, 7, NOW + timedelta(hours=1))
    with pytest.raises(TicketError, match="expired"):
        verify(text, KEY, NOW + timedelta(hours=1))


def test_a_ticket_signed_with_another_key_is_refused() -> None:
    text = issue(Ticket(3, 7, NOW + timedelta(hours=1)), b"other" * 8)
    with pytest.raises(TicketError, match="not valid"):
        verify(text, KEY, NOW)


@pytest.mark.parametrize("text", ["", "abc", "a.b.c", "!!!.???", "e30.AAAA"])
def test_damaged_tickets_are_refused(text: str) -> None:
    with pytest.raises(TicketError):
        verify(text, KEY, NOW)


def test_a_tampered_school_id_breaks_the_signature() -> None:
    _body, signature = issue(Ticket(3, 7, NOW + timedelta(hours=1)), KEY).split(".")
    other_body = issue(Ticket(4, 7, NOW + timedelta(hours=1)), KEY).split(".")[0]
    with pytest.raises(TicketError):
        verify(f"{other_body}.{signature}", KEY, NOW)
