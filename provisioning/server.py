"""The session server's admin API, as twm-provision uses it: register a box, see whether it is
online.

    async with ServerClient("https://twm.example.org", admin_token) as server:
        registered = await server.register_device("rosewood-1", care_home_id=3)
        registered.token          # SecretStr: goes to the box's credential file and nowhere else
        (await server.device(registered.id)).online

Every failure becomes one sentence (:class:`ServerFailed`) with the server's own ``detail``, as
``twm-server admin`` does (session_server/cli/client.py). The admin token is sent as a bearer
header and is never part of a message; it comes from ``$TWM_PROVISION_ADMIN_TOKEN`` or a file,
never from the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError

from provisioning.errors import ServerFailed, UsageError

ADMIN_TOKEN_ENV = "TWM_PROVISION_ADMIN_TOKEN"  # noqa: S105 (a variable's name)
TIMEOUT_SECONDS = 15.0


def load_admin_token(token_file: Path | None) -> SecretStr | None:
    """The admin token from ``token_file``, else ``$TWM_PROVISION_ADMIN_TOKEN``, else None."""
    if token_file is not None:
        try:
            text = token_file.expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"cannot read the admin token file {token_file}: {exc.strerror}"
            ) from None
        if not text or any(ch.isspace() for ch in text):
            raise UsageError(f"{token_file} does not hold an admin token (one line, no spaces)")
        return SecretStr(text)
    value = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    return SecretStr(value) if value else None


class PartyRef(BaseModel):
    id: int
    name: str


class DeviceRecord(BaseModel):
    """A device as ``GET /api/devices`` lists it (fields this tool does not use are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    name: str
    care_home: PartyRef | None = None
    school: PartyRef | None = None
    revoked_at: datetime | None = None
    last_seen_at: datetime | None = None
    # Connected to the server now. Servers before this field existed leave it out: then only
    # last_seen_at (when it last connected) can tell.
    online: bool | None = None


class Registration(DeviceRecord):
    token: SecretStr


_DEVICES = TypeAdapter(list[DeviceRecord])


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(
            str(error.get("msg", "invalid")).removeprefix("Value error, ")
            for error in detail
            if isinstance(error, dict)
        )
    return f"HTTP {response.status_code}"


class ServerClient:
    def __init__(self, server_url: str, token: SecretStr | None) -> None:
        self.server_url = server_url.rstrip("/")
        self._token = token
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._token is None:
            raise UsageError(
                f"no admin token: set {ADMIN_TOKEN_ENV} (the server's admin token) or pass "
                "--admin-token-file"
            )
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=f"{self.server_url}/api",
                headers={"Authorization": f"Bearer {self._token.get_secret_value()}"},
                timeout=TIMEOUT_SECONDS,
            )
        return self._http

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._client().request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServerFailed(
                f"cannot reach the session server at {self.server_url} ({type(exc).__name__}): "
                "check --server and this machine's network"
            ) from None
        if response.status_code >= 400:
            message = _detail(response)
            if response.status_code == 401:
                message += f" (check {ADMIN_TOKEN_ENV})"
            raise ServerFailed(
                f"the session server refused: {message} [HTTP {response.status_code}]"
            )
        try:
            return response.json()
        except ValueError:
            raise ServerFailed(
                f"{self.server_url} answered, but not as a session server: is --server right?"
            ) from None

    async def register_device(
        self, name: str, *, care_home_id: int | None = None, school_id: int | None = None
    ) -> Registration:
        body = {"name": name, "care_home_id": care_home_id, "school_id": school_id}
        data = await self._request("POST", "/devices", body)
        try:
            return Registration.model_validate(data)
        except ValidationError:
            raise ServerFailed(
                "the session server's answer to a registration was not understood"
            ) from None

    async def devices(self) -> list[DeviceRecord]:
        data = await self._request("GET", "/devices")
        try:
            return _DEVICES.validate_python(data)
        except ValidationError:
            raise ServerFailed("the session server's list of devices was not understood") from None

    async def device(self, device_id: int) -> DeviceRecord | None:
        return next((d for d in await self.devices() if d.id == device_id), None)

    async def device_named(self, name: str) -> DeviceRecord | None:
        return next((d for d in await self.devices() if d.name == name), None)
