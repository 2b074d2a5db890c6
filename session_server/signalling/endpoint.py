"""The WebSocket at ``/ws``: reads frames, turns them into typed messages, hands them to the hub.

Nothing a client sends can crash the server: malformed JSON, unknown types, oversized frames and
messages for rooms the sender is not in each get an error back and the connection survives; a
client that keeps sending garbage is closed with 1008 (policy violation).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from session_server.context import ServerContext
from session_server.protocol import (
    ClientMessage,
    Error,
    ErrorCode,
    Hello,
    encode,
    parse_client_message,
)
from session_server.ratelimit import AttemptLimiter
from session_server.signalling.connection import CLOSE_POLICY_VIOLATION, Connection
from session_server.signalling.hub import AuthenticationFailed, Hub

router = APIRouter()
log = structlog.get_logger("twm.signalling")

HELLO_TIMEOUT_SECONDS = 10.0


class Garbage(Exception):
    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


def describe(exc: ValidationError) -> Error:
    """Our own words for what was wrong; pydantic's would echo the input (it may hold secrets)."""
    kinds = {e["type"] for e in exc.errors()}
    if "json_invalid" in kinds or "json_type" in kinds:
        return Error(code=ErrorCode.BAD_JSON, message="that was not valid JSON")
    if kinds & {"union_tag_invalid", "union_tag_not_found", "dict_type"}:
        return Error(
            code=ErrorCode.UNKNOWN_TYPE,
            message="unknown message type: expected one of hello, join, leave, offer, answer, "
            "candidate, link",
        )
    fields = sorted({".".join(str(p) for p in e["loc"][1:]) or "message" for e in exc.errors()})
    return Error(code=ErrorCode.INVALID, message=f"invalid message: check {', '.join(fields)}")


def read_message(frame: Mapping[str, Any], limit: int) -> ClientMessage:
    """One received ASGI frame → a typed message, or ``Garbage`` saying what was wrong."""
    data: str | bytes | None = frame.get("text")
    if data is None:
        data = frame.get("bytes")
    if data is None:
        raise Garbage(Error(code=ErrorCode.BAD_JSON, message="empty frame"))
    size = len(data.encode()) if isinstance(data, str) else len(data)
    if size > limit:
        raise Garbage(Error(code=ErrorCode.TOO_LARGE, message=f"message over {limit} bytes"))
    try:
        return parse_client_message(data)
    except ValidationError as exc:
        raise Garbage(describe(exc)) from None


@router.websocket("/ws")
async def signalling(websocket: WebSocket) -> None:
    context: ServerContext = websocket.app.state.context
    hub: Hub = websocket.app.state.hub
    settings = context.settings
    remote = websocket.client.host if websocket.client else "unknown"
    garbage = AttemptLimiter(limit=settings.max_bad_messages, period=60.0, clock=time.monotonic)
    await websocket.accept()

    async def refuse(error: Error) -> bool:
        """Tell the client what was wrong; True when it has now used up its patience."""
        if not garbage.allow("frames"):
            await websocket.send_text(encode(error))
            await websocket.close(CLOSE_POLICY_VIOLATION, "too many bad messages")
            return True
        await websocket.send_text(encode(error))
        return False

    connection: Connection | None = None
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_SECONDS):
            while connection is None:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                try:
                    message = read_message(frame, settings.max_message_bytes)
                except Garbage as bad:
                    if await refuse(bad.error):
                        return
                    continue
                if not isinstance(message, Hello):
                    if await refuse(
                        Error(code=ErrorCode.NOT_AUTHENTICATED, message="send hello first")
                    ):
                        return
                    continue
                try:
                    connection = await hub.authenticate(message, remote)
                except AuthenticationFailed as failed:
                    await websocket.send_text(encode(failed.error))
                    await websocket.close(CLOSE_POLICY_VIOLATION, "authentication failed")
                    return
    except TimeoutError:
        await websocket.close(CLOSE_POLICY_VIOLATION, "no hello in time")
        return
    except WebSocketDisconnect:
        return

    writer = asyncio.create_task(
        connection.run_writer(websocket.send_text, _closer(websocket)), name="ws-writer"
    )
    try:
        await _read_loop(websocket, connection, hub, settings.max_message_bytes, garbage)
    except WebSocketDisconnect:
        pass
    finally:
        await hub.disconnect(connection)
        await _finish(writer, connection)


async def _finish(writer: asyncio.Task[None], connection: Connection) -> None:
    """Let the writer flush and close; a client that already went away needs nothing more."""
    if not writer.done():
        connection.close(1000, "bye")
        done, _ = await asyncio.wait({writer}, timeout=2.0)
        if not done:
            writer.cancel()
            await asyncio.wait({writer})
    if not writer.cancelled() and writer.exception() is not None:
        log.debug("socket closed before the writer finished", actor=connection.actor)


def _closer(websocket: WebSocket) -> Any:
    async def close(code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # already closed by the client
            await websocket.close(code, reason)

    return close


async def _read_loop(
    websocket: WebSocket,
    connection: Connection,
    hub: Hub,
    limit: int,
    garbage: AttemptLimiter,
) -> None:
    while not connection.closing:
        frame = await websocket.receive()
        if frame["type"] == "websocket.disconnect":
            return
        try:
            message = read_message(frame, limit)
        except Garbage as bad:
            connection.send(bad.error)
            if not garbage.allow("frames"):
                connection.close(CLOSE_POLICY_VIOLATION, "too many bad messages")
            continue
        try:
            await hub.handle(connection, message)
        except Exception:  # a bug in one handler must not end the server or other rooms
            log.exception("handling a message failed", actor=connection.actor, type=message.type)
            connection.send(Error(code=ErrorCode.INTERNAL, message="the server hit a problem"))
