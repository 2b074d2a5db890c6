"""STUN/TURN servers for a join, with coturn REST-API credentials (``use-auth-secret``).

coturn checks ``password == base64(HMAC-SHA1(secret, username))`` where the username is
``"<expiry unix time>:<who>"``, so credentials expire by themselves and the secret never leaves
the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

from pydantic import SecretStr

from session_server.protocol import IceServer


def turn_credential(secret: str, who: str, expires_at: datetime) -> tuple[str, str]:
    username = f"{int(expires_at.timestamp())}:{who}"
    password = base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()
    return username, password


def ice_servers(
    stun_urls: list[str],
    turn_urls: list[str],
    turn_secret: SecretStr | None,
    who: str,
    now: datetime,
    lifetime: timedelta,
) -> list[IceServer]:
    """The list handed to a party on join. Empty lists are valid: loopback needs neither."""
    servers: list[IceServer] = []
    if stun_urls:
        servers.append(IceServer(urls=stun_urls))
    if turn_urls and turn_secret is not None:
        username, password = turn_credential(turn_secret.get_secret_value(), who, now + lifetime)
        servers.append(IceServer(urls=turn_urls, username=username, credential=password))
    return servers
