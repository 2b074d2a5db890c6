import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from session_server.turn import ice_servers

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def test_turn_credentials_follow_coturn_rest_scheme_and_expire() -> None:
    servers = ice_servers(
        ["stun:127.0.0.1:3478"],
        ["turn:127.0.0.1:3478?transport=udp"],
        SecretStr("s3cret"),
        who="care_home-1",
        now=NOW,
        lifetime=timedelta(hours=6),
    )
    assert servers[0].urls == ["stun:127.0.0.1:3478"] and servers[0].username is None
    turn = servers[1]
    assert turn.username == f"{int((NOW + timedelta(hours=6)).timestamp())}:care_home-1"
    expected = base64.b64encode(
        hmac.new(b"s3cret", turn.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert turn.credential == expected
    assert "s3cret" not in turn.model_dump_json()


def test_without_a_secret_no_turn_entry_is_offered() -> None:
    servers = ice_servers([], ["turn:127.0.0.1:3478"], None, "x", NOW, timedelta(hours=1))
    assert servers == []
