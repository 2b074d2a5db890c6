"""How the box builds and watches its live link; the lead embeds it in the device settings.

[link]
host_addresses = ["127.0.0.1"]   # only where loopback is the way to the other side
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host_addresses: tuple[str, ...] = Field(
        default=(),
        description="local addresses to offer as ICE host candidates. Empty (the default): "
        "every interface's address except loopback, as aioice chooses. Set ['127.0.0.1'] "
        "where loopback is the only way to the other side: the tests, which keep media on "
        "loopback, a network namespace with only 'lo', a demo with both ends on one machine",
    )
    relay_only: bool = Field(
        default=False,
        description="send media only through the TURN relay (never direct): for a network "
        "that lets nothing else through, and to prove the relay works",
    )
    heartbeat_seconds: float = Field(
        default=1.0, gt=0, le=10, description="how often a heartbeat goes over the data channel"
    )
    silence_seconds: float = Field(
        default=4.0,
        gt=0,
        le=60,
        description="no heartbeat from the other side for this long: the link is down",
    )
    connect_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="a new peer connection not live after this long has failed",
    )

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value
