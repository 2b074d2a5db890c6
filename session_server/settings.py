"""The session server's settings: read once at start-up from ``TWM_SERVER_…`` variables.

Example::

    TWM_SERVER_DATA_DIR=/var/lib/twm-server TWM_SERVER_ADMIN_TOKEN=... twm-server serve
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "twm-server"


class ServerSettings(BaseSettings):
    """Everything the server can be told. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="TWM_SERVER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is a SQLite file in data_dir. "
        "PostgreSQL: postgresql+asyncpg://user:password@host/db",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for the admin API; the admin API is off without it"
    )
    ticket_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs school-page tickets; default: generated once into data_dir. "
        "Set it explicitly when several server processes share one database.",
    )
    timezone: str = "Europe/London"
    window_opens_minutes_before: int = Field(default=15, ge=0, le=240)
    window_closes_minutes_after: int = Field(default=10, ge=0, le=240)
    schedule_horizon_days: int = Field(default=7, ge=1, le=60)
    ticket_minutes: int = Field(default=180, ge=1, le=24 * 60)
    sign_in_attempts_per_minute: int = Field(default=5, ge=1, le=1000)

    # NoDecode: operators write "turn:a:3478,turn:b:3478", not JSON; the validator splits it.
    stun_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    turn_secret: SecretStr | None = Field(
        default=None, description="coturn static-auth-secret (use-auth-secret mode)"
    )
    turn_credential_minutes: int = Field(default=6 * 60, ge=5, le=48 * 60)

    sweep_seconds: float = Field(
        default=15.0, gt=0, le=300, description="how often rooms past their window are closed"
    )
    max_message_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_bad_messages: int = Field(
        default=5, ge=1, le=100, description="errors in a row before a client is closed (1008)"
    )

    @field_validator("admin_token", "ticket_secret", "turn_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        # `TWM_SERVER_ADMIN_TOKEN=` in an env file means "not set", not "the empty token".
        return None if value == "" else value

    @field_validator("admin_token", "ticket_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (try: openssl rand -hex 24)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'Europe/London'"
            ) from exc
        return value

    @field_validator("stun_urls", "turn_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("stun_urls", "turn_urls")
    @classmethod
    def _ice_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r} is not a STUN/TURN URL (stun:HOST:PORT, turn:HOST:PORT)")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def window_before(self) -> timedelta:
        return timedelta(minutes=self.window_opens_minutes_before)

    @property
    def window_after(self) -> timedelta:
        return timedelta(minutes=self.window_closes_minutes_after)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'twm.sqlite3'}"

    def resolved_ticket_secret(self) -> bytes:
        """The ticket key; generated on first use and kept (mode 0600) so restarts keep tickets."""
        if self.ticket_secret is not None:
            return self.ticket_secret.get_secret_value().encode()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "ticket.key"
        if not path.exists():
            # O_EXCL: two processes starting at once must not overwrite each other's key.
            try:
                fd = path.open("x", encoding="ascii")
            except FileExistsError:
                pass
            else:
                with fd:
                    path.chmod(0o600)
                    fd.write(secrets.token_hex(32))
        return path.read_text(encoding="ascii").strip().encode()
