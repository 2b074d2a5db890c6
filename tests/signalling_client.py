"""A minimal signalling client for tests: send typed messages, wait for the next of a type."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TypeVar

from pydantic import BaseModel, SecretStr
from websockets.asyncio.client import ClientConnection, connect

from session_server.protocol import Hello, ServerMessage, encode, encode_hello, parse_server_message

M = TypeVar("M", bound=BaseModel)
WAIT = 10.0


class SignallingClient:
    def __init__(self, ws_url: str) -> None:
        self._url = ws_url
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> SignallingClient:
        self._ws = await connect(self._url, open_timeout=WAIT, max_size=2**22)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.ws.close()

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None
        return self._ws

    async def hello_device(self, token: str) -> None:
        await self.ws.send(encode_hello(Hello(device_token=SecretStr(token))))

    async def hello_ticket(self, ticket: str) -> None:
        await self.ws.send(encode_hello(Hello(ticket=SecretStr(ticket))))

    async def send(self, message: BaseModel) -> None:
        await self.ws.send(encode(message))

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def recv(self) -> ServerMessage:
        return parse_server_message(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def expect(self, kind: type[M]) -> M:
        """The next message, which must be of this type."""
        message = await self.recv()
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    async def next_of(self, kind: type[M]) -> M:
        """Skip other messages (e.g. schedule pushes) until one of this type arrives."""
        while True:
            message = await self.recv()
            if isinstance(message, kind):
                return message
