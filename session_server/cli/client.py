"""The admin command line's HTTP client: one place that turns every failure into a sentence.

A refused request prints the server's own ``detail``; a server that does not answer says which
address was tried and how to start one. Errors are :class:`AdminError`, which the admin command
group prints (without a traceback) before exiting with status 1.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 15.0


class AdminError(Exception):
    """Something the coordinator must act on; shown without a traceback, exit status 1."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        # FastAPI's own validation errors: say which field and what is wrong with it.
        parts = []
        for error in detail:
            if isinstance(error, dict):
                where = ".".join(str(p) for p in error.get("loc", []) if p != "body")
                message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
                parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts) or "the request was not valid"
    return response.text.strip()[:300]


class AdminClient:
    """JSON over HTTP to ``/api`` of a running server, with the admin token as bearer."""

    def __init__(self, server_url: str, token: str | None) -> None:
        self.server_url = server_url.rstrip("/")
        self._token = token
        self._http: httpx.Client | None = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if not self._token:
            raise AdminError(
                "no admin token: set TWM_SERVER_ADMIN_TOKEN (the server's admin token) "
                "or pass --token"
            )
        if self._http is None:
            self._http = httpx.Client(
                base_url=f"{self.server_url}/api",
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=TIMEOUT_SECONDS,
            )
        return self._http

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=params or None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", path, json=body if body is not None else {})

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client().request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise AdminError(
                f"cannot reach the session server at {self.server_url}: is it running? "
                "Start it with 'twm-server serve' (or 'twm-server demo'), or point --server / "
                "TWM_SERVER_URL at the right address."
            ) from exc
        except httpx.HTTPError as exc:
            raise AdminError(
                f"the session server at {self.server_url} did not answer properly "
                f"({type(exc).__name__}); try again, or check its log"
            ) from exc
        if response.status_code >= 400:
            message = _detail(response)
            if response.status_code == 401:
                message += " (check TWM_SERVER_ADMIN_TOKEN)"
            raise AdminError(f"{message} [HTTP {response.status_code}]")
        try:
            return response.json()
        except ValueError as exc:
            raise AdminError(
                f"{self.server_url} answered, but not as a session server: is that the right "
                "address?"
            ) from exc
