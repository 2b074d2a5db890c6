from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from session_server.protocol import (
    Hello,
    Join,
    Offer,
    Reaction,
    ReactionKind,
    encode,
    encode_hello,
    parse_client_message,
    parse_peer_message,
    parse_room,
    room_id,
)


def test_room_ids_round_trip() -> None:
    start = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    assert room_id(12, start) == "s12@20261124T1400Z"
    assert parse_room("s12@20261124T1400Z") == (12, start)


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"join","room":"s1@2026"}',
        '{"type":"join","room":"../etc"}',
        '{"type":"join"}',
        '{"type":"offer","room":"s1@20261124T1400Z","sdp":"' + "x" * 40_000 + '"}',
        '{"type":"join","room":"s1@20261124T1400Z","extra":1}',
        '{"type":"dance"}',
        "not json",
        "[]",
    ],
)
def test_bad_client_messages_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_client_message(text)


def test_messages_round_trip() -> None:
    offer = Offer(room="s1@20261124T1400Z", sdp="v=0")
    assert parse_client_message(encode(offer)) == offer
    assert isinstance(parse_client_message('{"type":"join","room":"s1@20261124T1400Z"}'), Join)
    assert parse_peer_message(encode(Reaction(kind=ReactionKind.HEART))).kind is ReactionKind.HEART


def test_secrets_never_print_but_hello_carries_its_own() -> None:
    hello = Hello(device_token=SecretStr("twmd_topsecret"))
    assert "topsecret" not in repr(hello)
    assert "topsecret" not in encode(hello)
    assert parse_client_message(encode_hello(hello)) == hello
