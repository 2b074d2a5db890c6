"""The box's signalling connection: one WebSocket to the session server, kept up forever.

It says hello with the device token, turns what the server says into lifecycle events, relays
offers, answers and candidates between the server and the link, and reports link changes to the
server's audit log. When the connection drops it tries again with exponential backoff and full
jitter (0.5 s, doubling, capped at 30 s); a server that refuses the token (not recognised, or the
device revoked) is asked again only every few minutes, because only a coordinator can change that.

    client = SignallingClient(settings.server_url, token, on_event, SystemClock())
    links = LinkManager(client, on_event, role=..., microphone=..., on_remote_audio=...)
    runner = asyncio.create_task(client.run())
    ...
    client.join(room)                  # → JoinAccepted or JoinRefused
    await client.close()

Every event is delivered on the event loop, in the order the server sent its messages. Sending
never waits: ``join``/``leave``/``send``/``report_link`` queue the message and say whether it
could be queued (False while the server is not connected; the lifecycle rejoins on ServerUp).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from pydantic import SecretStr, ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from device.lifecycle.events import (
    Event,
    JoinAccepted,
    JoinRefused,
    PeerJoined,
    PeerLeft,
    RoomEnded,
    ScheduleChanged,
    ServerDown,
    ServerUp,
)
from device.net.backoff import Backoff
from session_server.clock import Clock
from session_server.protocol import (
    Answer,
    Candidate,
    Error,
    ErrorCode,
    Hello,
    IceServer,
    Join,
    Joined,
    Leave,
    LinkReport,
    LinkState,
    Offer,
    Party,
    Presence,
    Route,
    Schedule,
    ServerMessage,
    Welcome,
    encode,
    encode_hello,
    parse_server_message,
)

log = structlog.get_logger("twm.device.signalling")

# websockets logs every frame at DEBUG, the hello (and so the token) included: its logger for
# our connection never goes below INFO, whatever the root logger's level.
_socket_log = logging.getLogger("twm.device.signalling.socket")
_socket_log.setLevel(logging.INFO)

# The server's answers to a join that mean "not this room, not now".
REFUSALS = frozenset(
    {
        ErrorCode.NOT_OPEN_YET,
        ErrorCode.CLOSED,
        ErrorCode.CANCELLED,
        ErrorCode.NOT_YOUR_SESSION,
        ErrorCode.NO_SUCH_ROOM,
    }
)
# The server ending our place in the room we are in.
ENDINGS = frozenset({ErrorCode.CLOSED, ErrorCode.CANCELLED, ErrorCode.REPLACED})

PeerSignal = Offer | Answer | Candidate | Presence
Outgoing = Join | Leave | Offer | Answer | Candidate | LinkReport
MAX_MESSAGE_BYTES = 1 << 20


class SignallingClient:
    """One box's connection to the session server; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: SecretStr,
        on_event: Callable[[Event], None],
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        refused_retry_seconds: float = 300.0,
        stable_seconds: float = 10.0,
        open_timeout: float = 10.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
    ) -> None:
        self._url = url
        self._token = token
        self._on_event = on_event
        self._clock = clock
        self._backoff = backoff if backoff is not None else Backoff()
        self._refused_retry = refused_retry_seconds
        self._stable = stable_seconds
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout

        self._listeners: list[Callable[[PeerSignal], None]] = []
        self._socket: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._closing = False
        self._running = False
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._attempt: asyncio.Task[None] | None = None
        self._welcomed_at: float | None = None

        self._party: Party | None = None
        self._offset = timedelta(0)
        self._welcomed = False
        self._refused = False
        self._joining: str | None = None
        self._room: str | None = None
        self._ice_servers: dict[str, tuple[IceServer, ...]] = {}
        self.attempts = 0  # connection attempts so far, for `twm-device status` and tests
        self.refusals = 0  # times the server refused the token
        self.last_error: str | None = None

    # --- what the rest of the box reads -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The server has welcomed us on the current connection."""
        return self._welcomed

    @property
    def party(self) -> Party | None:
        """Who the server knows us as (from the last welcome)."""
        return self._party

    @property
    def room(self) -> str | None:
        """The room the server has us in on this connection."""
        return self._room

    def ice_servers(self, room: str) -> tuple[IceServer, ...]:
        """The STUN/TURN servers from the last ``joined`` for this room (empty if none)."""
        return self._ice_servers.get(room, ())

    def server_now(self) -> datetime:
        """The server's time: our clock corrected by the offset measured at the last welcome
        (a box whose clock is wrong must not judge session windows by it)."""
        return self._clock.now() + self._offset

    def subscribe(self, listener: Callable[[PeerSignal], None]) -> Callable[[], None]:
        """Hear every offer, answer, candidate and presence for the room we are in, in the
        server's order. Returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # --- what the box asks the server -------------------------------------------------------------

    def join(self, room: str) -> bool:
        if not self.send(Join(room=room)):
            return False
        self._joining = room
        return True

    def leave(self, room: str) -> bool:
        if self._joining == room:
            self._joining = None
        if self._room == room:
            self._room = None
        return self.send(Leave(room=room))

    def report_link(self, room: str, up: bool, route: Route = Route.UNKNOWN) -> bool:
        """Tell the audit log the media link went up or down, and how it is routed."""
        state = LinkState.UP if up else LinkState.DOWN
        return self.send(LinkReport(room=room, state=state, route=route))

    def send(self, message: Outgoing) -> bool:
        """Queue a message for the server; False when not connected (the message is dropped:
        anything it said would be stale by the time the connection is back)."""
        if not self._welcomed or self._outbox is None:
            return False
        self._outbox.put_nowait(encode(message))
        return True

    # --- life -------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until ``close()``."""
        if self._running:
            raise RuntimeError("this signalling client is already running")
        self._running = True
        self._stopped.clear()
        try:
            while not self._closing:
                await self._one_connection()
                if self._closing:
                    break
                delay = self._next_delay()
                log.info("signalling will try again", seconds=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop for good: close the connection and let ``run()`` return."""
        self._closing = True
        self._wake.set()
        socket = self._socket
        if socket is not None:
            await socket.close()
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            attempt.cancel()  # still opening: there is nothing to close politely
        if self._running:
            await self._stopped.wait()

    async def _one_connection(self) -> None:
        self.attempts += 1
        self._welcomed_at = None
        attempt = asyncio.create_task(self._connection(), name="signalling-connection")
        self._attempt = attempt
        try:
            await asyncio.wait({attempt})
        except asyncio.CancelledError:
            attempt.cancel()
            await asyncio.wait({attempt})
            raise
        finally:
            self._attempt = None
            self._down()
        if attempt.cancelled():
            return
        exc = attempt.exception()
        if isinstance(exc, OSError | TimeoutError | WebSocketException):
            self._problem(f"cannot reach the server: {type(exc).__name__}: {exc}")
        elif exc is not None:  # a bug must not end the box's link to the server
            log.error("signalling failed unexpectedly", exc_info=exc)
            self.last_error = "signalling failed unexpectedly (see the log)"

    def _next_delay(self) -> float:
        if self._refused:
            self._refused = False
            return self._refused_retry
        loop = asyncio.get_running_loop()
        if self._welcomed_at is not None and loop.time() - self._welcomed_at >= self._stable:
            self._backoff.reset()  # that connection stayed up: start again from short waits
        return self._backoff.next_delay()

    async def _connection(self) -> None:
        async with connect(
            self._url,
            open_timeout=self._open_timeout,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=2.0,
            max_size=MAX_MESSAGE_BYTES,
            logger=_socket_log,
        ) as socket:
            self._socket = socket
            outbox: asyncio.Queue[str] = asyncio.Queue()
            self._outbox = outbox
            writer = asyncio.create_task(self._write(socket, outbox), name="signalling-writer")
            try:
                await socket.send(encode_hello(Hello(device_token=self._token)))
                with contextlib.suppress(ConnectionClosed):
                    async for frame in socket:
                        self._receive(frame)
                if socket.close_code not in (None, 1000, 1001) and not self._refused:
                    self._problem(
                        f"the server closed the connection ({socket.close_code} "
                        f"{socket.close_reason or ''})".rstrip()
                    )
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer

    async def _write(self, socket: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        while True:
            await socket.send(await outbox.get())

    def _down(self) -> None:
        was_up = self._welcomed
        self._socket = None
        self._outbox = None
        self._welcomed = False
        # A new connection starts outside every room: the server forgot the old one's.
        self._joining = None
        self._room = None
        if was_up:
            log.warning("signalling connection lost")
            self._emit(ServerDown())

    def _problem(self, message: str) -> None:
        self.last_error = message
        log.warning("signalling problem", problem=message)

    # --- what the server says ---------------------------------------------------------------------

    def _receive(self, frame: str | bytes) -> None:
        try:
            message = parse_server_message(frame)
        except ValidationError:
            # Never echo the frame: a broken server could send anything back.
            log.warning("ignored an unreadable message from the server")
            return
        self._handle(message)

    def _handle(self, message: ServerMessage) -> None:
        match message:
            case Welcome():
                self._welcomed = True
                self._welcomed_at = asyncio.get_running_loop().time()
                self._party = message.party
                self._offset = message.server_time - self._clock.now()
                self.last_error = None
                log.info(
                    "signalling connected",
                    party=message.party.kind.value,
                    name=message.party.name,
                    clock_offset_seconds=round(self._offset.total_seconds(), 3),
                )
                self._emit(ServerUp(message.party))
            case Schedule():
                self._emit(ScheduleChanged(tuple(message.occurrences)))
            case Joined():
                if self._joining == message.room:
                    self._joining = None
                self._room = message.room
                self._ice_servers = {message.room: tuple(message.ice_servers)}
                self._emit(JoinAccepted(message.room, message.peer_present))
            case Presence():
                if message.room != self._room or message.party == self._party:
                    return
                self._relay(message)
                self._emit(PeerJoined(message.room) if message.present else PeerLeft(message.room))
            case Offer() | Answer() | Candidate():
                if message.room == self._room:
                    self._relay(message)
                else:
                    log.info("ignored a relayed message for another room", type=message.type)
            case Error():
                self._on_error(message)

    def _on_error(self, error: Error) -> None:
        if error.code is ErrorCode.AUTH_FAILED:
            self._refused = True
            self.refusals += 1
            self.last_error = f"the server refused this box: {error.message}"
            log.error(
                "the server refused this box's token; asking again in a while",
                reason=error.message,
                retry_seconds=self._refused_retry,
            )
            return
        room = error.room
        if room is not None and room == self._room and error.code in ENDINGS:
            self._room = None
            if self._joining == room:
                self._joining = None
            log.info("the server ended our place in the room", room=room, code=error.code.value)
            self._emit(RoomEnded(room, error.message))
        elif room is not None and room == self._joining and error.code in REFUSALS:
            self._joining = None
            log.info("the server refused our join", room=room, code=error.code.value)
            self._emit(JoinRefused(room, error.message))
        elif error.code is ErrorCode.PEER_ABSENT:
            log.debug("the other side is not in the room", room=room)
        else:
            log.warning(
                "the server reported a problem", code=error.code.value, message=error.message
            )

    def _relay(self, message: PeerSignal) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:  # one broken listener must not silence the others
                log.exception("a signalling listener failed", type=message.type)

    def _emit(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:  # the reader must survive a failing handler
            log.exception("handling a signalling event failed", event=type(event).__name__)
