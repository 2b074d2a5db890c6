"""A stand-in for the care-home box in tests: an aiortc peer that signs in as a device.

It speaks the real protocol (``session_server.protocol``) over the real signalling socket,
offers or answers by the join rule (whoever joins second offers), sends a steady tone, counts
the audio frames it hears, and trades reactions and heartbeats over the ``twm`` data channel.
The device issue replaces it with the real box.

    device = StandinDevice(server.ws_url, token)
    await device.connect()
    await device.join(room)          # answers the page's offer, or offers if the page was first
    ...
    await device.send_reaction(ReactionKind.HEART)
    await device.close()
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import time
from collections.abc import Coroutine
from typing import Any

import websockets
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame
from pydantic import SecretStr

from session_server.protocol import (
    DATA_CHANNEL_LABEL,
    Answer,
    Candidate,
    Error,
    Heartbeat,
    Hello,
    IceServer,
    Join,
    Joined,
    Leave,
    Offer,
    Presence,
    Reaction,
    ReactionKind,
    Schedule,
    Welcome,
    encode,
    encode_hello,
    parse_peer_message,
    parse_server_message,
)

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
TONE_HZ = 400  # 120 samples a period: a 20 ms frame holds exactly 8, so one frame repeats cleanly
TONE_AMPLITUDE = 8_000
REPLY_TIMEOUT = 10.0


class JoinRefusedError(Exception):
    def __init__(self, error: Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


class ToneTrack(MediaStreamTrack):
    """A live 400 Hz tone, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        samples = array.array(
            "h",
            (
                round(TONE_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / SAMPLE_RATE))
                for n in range(FRAME_SAMPLES)
            ),
        )
        self._frame_bytes = samples.tobytes()
        self._start: float | None = None
        self._sent = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._sent / SAMPLE_RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(self._frame_bytes)
        frame.pts = self._sent
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME_SAMPLES
        return frame


def rtc_configuration(servers: list[IceServer]) -> RTCConfiguration:
    """The ICE servers the server handed out, always explicit: aiortc's default asks a public
    STUN host, and tests talk only to loopback."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in servers
        ]
    )


def _sdp(pc: RTCPeerConnection) -> str:
    description = pc.localDescription
    if description is None:
        raise RuntimeError("no local description yet")
    sdp: str = description.sdp
    return sdp


class StandinDevice:
    """One care-home box's signalling and media, enough to be the page's other side."""

    def __init__(self, ws_url: str, token: str) -> None:
        self._ws_url = ws_url
        self._token = token
        self._socket: websockets.ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._welcome: asyncio.Future[Welcome] | None = None
        self._join_reply: asyncio.Future[Joined] | None = None
        self.room: str | None = None
        self.joined: Joined | None = None
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.presence: list[Presence] = []
        self.errors: list[Error] = []
        self.schedules: list[Schedule] = []
        self.reactions: list[ReactionKind] = []
        self.heartbeats_heard = 0
        self.frames_heard = 0
        self.loudest_heard = 0
        self.problems: list[BaseException] = []

    # --- signalling ---------------------------------------------------------------------------

    async def connect(self) -> Welcome:
        self._socket = await websockets.connect(self._ws_url)
        self._welcome = asyncio.get_running_loop().create_future()
        self._spawn(self._read())
        await self._socket.send(encode_hello(Hello(device_token=SecretStr(self._token))))
        return await asyncio.wait_for(self._welcome, REPLY_TIMEOUT)

    async def join(self, room: str) -> Joined:
        """Enter the room; offer at once if the page is already there (the join rule)."""
        self._join_reply = asyncio.get_running_loop().create_future()
        self.room = room
        await self._send(encode(Join(room=room)))
        self.joined = await asyncio.wait_for(self._join_reply, REPLY_TIMEOUT)
        if self.joined.peer_present:
            await self._offer()
        return self.joined

    async def leave(self) -> None:
        if self.room is not None:
            await self._send(encode(Leave(room=self.room)))
        await self._close_peer()

    async def lose_link(self) -> None:
        """Drop the media link without a word to the server, as a box whose network failed."""
        await self._close_peer()

    async def _send(self, text: str) -> None:
        if self._socket is None:
            raise RuntimeError("connect() first")
        await self._socket.send(text)

    async def _read(self) -> None:
        assert self._socket is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self._socket:
                try:
                    await self._handle(text)
                except Exception as exc:  # kept for the test to raise; the reader goes on
                    self.problems.append(exc)

    async def _handle(self, text: str | bytes) -> None:
        message = parse_server_message(text)
        match message:
            case Welcome():
                if self._welcome is not None and not self._welcome.done():
                    self._welcome.set_result(message)
            case Schedule():
                self.schedules.append(message)
            case Joined():
                if self._join_reply is not None and not self._join_reply.done():
                    self._join_reply.set_result(message)
            case Error():
                self.errors.append(message)
                if self._welcome is not None and not self._welcome.done():
                    self._welcome.set_exception(JoinRefusedError(message))
                elif self._join_reply is not None and not self._join_reply.done():
                    self._join_reply.set_exception(JoinRefusedError(message))
            case Presence():
                self.presence.append(message)
                if not message.present:
                    await self._close_peer()
            case Offer():
                await self._answer(message.sdp)
            case Answer():
                if self.pc is not None:
                    await self.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=message.sdp, type="answer")
                    )
            case Candidate():
                await self._add_candidate(message)

    async def _add_candidate(self, message: Candidate) -> None:
        if self.pc is None:
            return
        if message.candidate is None:
            await self.pc.addIceCandidate(None)
            return
        candidate = candidate_from_sdp(message.candidate.removeprefix("candidate:"))
        candidate.sdpMid = message.sdp_mid
        candidate.sdpMLineIndex = message.sdp_mline_index
        await self.pc.addIceCandidate(candidate)

    # --- media and data -----------------------------------------------------------------------

    def _new_peer(self) -> RTCPeerConnection:
        assert self.joined is not None
        pc = RTCPeerConnection(configuration=rtc_configuration(self.joined.ice_servers))
        self.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._listen(track))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label == DATA_CHANNEL_LABEL:
                self._use_channel(channel)

        return pc

    async def _offer(self) -> None:
        await self._close_peer()
        pc = self._new_peer()
        pc.addTrack(ToneTrack())
        self._use_channel(pc.createDataChannel(DATA_CHANNEL_LABEL))
        self._more_channels(pc)
        # aiortc gathers while setting the local description: the SDP carries every candidate.
        await pc.setLocalDescription(await pc.createOffer())
        await self._send(encode(Offer(room=self._room(), sdp=_sdp(pc))))

    def _more_channels(self, pc: RTCPeerConnection) -> None:
        """Data channels besides "twm" that an offer carries (a subclass adds its own)."""

    async def _answer(self, sdp: str) -> None:
        await self._close_peer()
        pc = self._new_peer()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        pc.addTrack(ToneTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        await self._send(encode(Answer(room=self._room(), sdp=_sdp(pc))))

    def _room(self) -> str:
        if self.room is None:
            raise RuntimeError("join() first")
        return self.room

    def _use_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            message = parse_peer_message(data)
            if isinstance(message, Reaction):
                self.reactions.append(message.kind)
            elif isinstance(message, Heartbeat):
                self.heartbeats_heard += 1

        self._spawn(self._beat(channel))

    async def _beat(self, channel: RTCDataChannel) -> None:
        seq = 0
        while channel.readyState in ("connecting", "open"):
            if channel.readyState == "open":
                channel.send(encode(Heartbeat(seq=seq)))
                seq += 1
            await asyncio.sleep(1.0)

    async def send_reaction(self, kind: ReactionKind) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise RuntimeError("the data channel is not open")
        self.channel.send(encode(Reaction(kind=kind)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        """Count what the page sends, and how loud it is (its fake microphone beeps)."""
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames_heard += 1
                if isinstance(frame, AudioFrame) and frame.format.name == "s16":
                    samples = array.array("h", bytes(frame.planes[0]))
                    if samples:
                        self.loudest_heard = max(
                            self.loudest_heard, max(abs(min(samples)), max(samples))
                        )

    # --- life ---------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_peer(self) -> None:
        pc, self.pc, self.channel = self.pc, None, None
        if pc is not None:
            await pc.close()

    async def close(self) -> None:
        await self._close_peer()
        if self._socket is not None:
            await self._socket.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
