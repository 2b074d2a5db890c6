"""One live link for one room: an aiortc peer connection with our microphone, the other room's
audio, the ``twm`` data channel for heartbeats and reactions, and the ``twm-midi`` data channel
for the notes played in each room (``device.midi``).

MIDI has a channel of its own, ordered and reliable (a lost note-off is a stuck note), so that a
burst of notes never queues in front of the heartbeats that say whether the link is alive. Only
the ``twm`` channel counts for liveness: a peer without MIDI (a browser with no instrument code)
is still a whole link, and ``send_midi`` then says False.

A link either makes the offer (it creates both data channels, gathers all its candidates and sends
the SDP with them, as aiortc does) or waits for the other side's offer and answers it. It never
renegotiates: aiortc has no ICE restart, so a lost link is replaced by a new one (``LinkManager``).

Liveness: the link is *alive* while the peer connection is connected, the data channel is open
and a heartbeat (or any message) arrived within ``silence_seconds``. It reports each change to
its owner and to the server's audit log (with the route: relay or direct). A link that has not
become alive within ``connect_seconds`` of starting to negotiate, or whose connection failed or
closed, is *dead*: it stays dead until replaced.

    link = Link(room, offer=True, ice_servers=..., signalling=client, microphone=track, ...)
    link.start()
    ...
    await link.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import structlog
from aiortc import (
    MediaStreamTrack,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from pydantic import ValidationError

from device.midi import wire
from device.midi.errors import MidiDataError
from device.net.ice import host_addresses, parse_candidate, route_of, rtc_configuration
from device.net.link_settings import LinkSettings
from session_server.protocol import (
    DATA_CHANNEL_LABEL,
    MIDI_DATA_CHANNEL_LABEL,
    Answer,
    Candidate,
    Heartbeat,
    IceServer,
    MidiEvents,
    Offer,
    Reaction,
    ReactionKind,
    Route,
    encode,
    parse_peer_message,
)

log = structlog.get_logger("twm.device.link")

# The other room's audio: its track, and the RTCRtpReceiver it comes through (the music receive
# path takes the RTP packets from the receiver itself).
RemoteAudio = Callable[[MediaStreamTrack, RTCRtpReceiver], None]
# The other room's MIDI, as it arrives: the link it came on and its timestamped messages.
RemoteMidi = Callable[["Link", list[wire.Timed]], None]


class SignalSender(Protocol):
    """The part of the signalling client a link uses."""

    def send(self, message: Offer | Answer) -> bool: ...

    def report_link(self, room: str, up: bool, route: Route = ...) -> bool: ...


class Link:
    def __init__(
        self,
        room: str,
        *,
        offer: bool,
        ice_servers: Sequence[IceServer],
        signalling: SignalSender,
        microphone: Callable[[], MediaStreamTrack],
        on_remote_audio: RemoteAudio,
        on_change: Callable[[Link], None],
        on_reaction: Callable[[Link, ReactionKind], None],
        settings: LinkSettings,
        tune_sdp: Callable[[str], str] | None = None,
        on_midi: RemoteMidi | None = None,
    ) -> None:
        self.room = room
        self.offerer = offer
        self._ice_servers = tuple(ice_servers)
        self._signalling = signalling
        self._microphone = microphone
        self._on_remote_audio = on_remote_audio
        self._on_change = on_change
        self._on_reaction = on_reaction
        self._on_midi = on_midi
        self._settings = settings
        # The SDP we send, as the other side should read it (e.g. ``device.net.sdp.tune_for_music``:
        # aiortc ignores ptime and Opus parameters, the browser obeys them).
        self._tune_sdp = tune_sdp

        self._pc: RTCPeerConnection | None = None
        self._track: MediaStreamTrack | None = None
        self._channel: RTCDataChannel | None = None
        self._midi_channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._early_candidates: list[Candidate] = []
        self._remote_set = False
        self._answered = False  # our offer got its answer (offerer only)
        self._started = False
        self._negotiating_since: float | None = None
        self._last_heard = 0.0
        self._ever_alive = False
        self._alive = False
        self._dead = False
        self._closed = False
        self._torn_down = False
        self._reported_up = False
        self.route = Route.UNKNOWN
        self.heartbeats_heard = 0
        self.reactions_heard = 0
        self.bad_messages = 0  # data-channel messages that were not a protocol PeerMessage
        self.midi_batches_heard = 0
        self.bad_midi = 0  # messages on the MIDI channel that were not a valid MIDI batch
        self.bad_candidates = 0  # trickled candidates we could not use

    # --- what the manager reads -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def dead(self) -> bool:
        return self._dead

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def awaiting_offer(self) -> bool:
        """An answering link that has not had its offer yet."""
        return not self.offerer and self._pc is None and not self._closed

    @property
    def offering(self) -> bool:
        """Our own offer is outstanding: made (or being made) and not yet answered."""
        return self.offerer and not self._answered and not self._dead and not self._closed

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState if self._pc is not None else "none"

    @property
    def channel(self) -> RTCDataChannel | None:
        return self._channel

    @property
    def midi_channel(self) -> RTCDataChannel | None:
        return self._midi_channel

    # --- negotiation ------------------------------------------------------------------------------

    def start(self, offer_sdp: str | None = None) -> None:
        """Begin: make our offer, or answer ``offer_sdp`` if we already have the other's offer,
        or (answering, none yet) wait for ``accept_offer``."""
        if self._started:
            raise RuntimeError("a link starts once")
        self._started = True
        self._spawn(self._watch(), "link-watch")
        if self.offerer:
            self._spawn(self._make_offer(), "link-offer")
        elif offer_sdp is not None:
            self.accept_offer(offer_sdp)

    def accept_offer(self, sdp: str) -> None:
        if not self.awaiting_offer:
            raise RuntimeError("this link does not wait for an offer")
        self._new_peer_connection()
        self._spawn(self._answer(sdp), "link-answer")

    def accept_answer(self, sdp: str) -> None:
        if not self.offering or self._pc is None or self._pc.signalingState != "have-local-offer":
            log.info("ignored an answer we were not waiting for", room=self.room)
            return
        self._answered = True
        self._spawn(self._apply_answer(sdp), "link-apply-answer")

    def add_candidate(self, message: Candidate) -> None:
        """A trickled candidate from the other side (None: end of candidates)."""
        if self._closed:
            return
        if not self._remote_set:
            self._early_candidates.append(message)
            return
        self._spawn(self._add_candidate(message), "link-candidate")

    def _new_peer_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(
            configuration=rtc_configuration(self._ice_servers, relay_only=self._settings.relay_only)
        )
        self._pc = pc
        self._negotiating_since = asyncio.get_running_loop().time()

        @pc.on("connectionstatechange")
        def on_connection_state() -> None:
            self._judge()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio" or self._closed:
                return
            # aiortc emits "track" from setRemoteDescription, before any media flows: a tap on
            # the receiver installed now sees every packet.
            receiver = next(
                (t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None
            )
            if receiver is None:  # aiortc made the track for a receiver: never expected
                log.warning("a remote track without its receiver: not played", room=self.room)
                return
            try:
                self._on_remote_audio(track, receiver)
            except Exception:
                log.exception("the remote audio handler failed", room=self.room)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label == DATA_CHANNEL_LABEL and self._channel is None:
                self._use_channel(channel)
            elif channel.label == MIDI_DATA_CHANNEL_LABEL and self._midi_channel is None:
                self._use_midi_channel(channel)
            else:
                log.info("ignored an unexpected data channel", label=channel.label)

        self._track = self._microphone()
        return pc

    async def _make_offer(self) -> None:
        pc = self._new_peer_connection()
        assert self._track is not None  # made with the peer connection
        pc.addTrack(self._track)
        self._use_channel(pc.createDataChannel(DATA_CHANNEL_LABEL))
        # Ordered and reliable are aiortc's defaults; said here because a note-off must arrive.
        self._use_midi_channel(pc.createDataChannel(MIDI_DATA_CHANNEL_LABEL, ordered=True))
        offer = await pc.createOffer()
        # aiortc gathers every candidate here, so the SDP we send carries them all.
        with host_addresses(self._settings.host_addresses):
            await pc.setLocalDescription(offer)
        self._send_description(pc, Offer)

    async def _answer(self, sdp: str) -> None:
        pc = self._pc
        assert pc is not None and self._track is not None  # made by accept_offer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self._remote_description_set()
        # After the offer, so the track takes the offer's audio transceiver (sendrecv).
        pc.addTrack(self._track)
        answer = await pc.createAnswer()
        with host_addresses(self._settings.host_addresses):
            await pc.setLocalDescription(answer)
        self._send_description(pc, Answer)

    async def _apply_answer(self, sdp: str) -> None:
        assert self._pc is not None  # accept_answer checked it
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await self._remote_description_set()

    def _send_description(self, pc: RTCPeerConnection, kind: type[Offer] | type[Answer]) -> None:
        description = pc.localDescription
        if self._closed or description is None:
            return
        sdp = description.sdp if self._tune_sdp is None else self._tune_sdp(description.sdp)
        if not self._signalling.send(kind(room=self.room, sdp=sdp)):
            log.warning("could not send our SDP: the server is not connected", room=self.room)

    async def _remote_description_set(self) -> None:
        self._remote_set = True
        while self._early_candidates:
            await self._add_candidate(self._early_candidates.pop(0))

    async def _add_candidate(self, message: Candidate) -> None:
        if self._pc is None or self._closed:
            return
        if message.candidate is None:
            await self._pc.addIceCandidate(None)
            return
        candidate = parse_candidate(message.candidate)
        if candidate is None:
            self.bad_candidates += 1
            log.info("ignored a candidate we could not read", room=self.room)
            return
        candidate.sdpMid = message.sdp_mid
        candidate.sdpMLineIndex = message.sdp_mline_index
        try:
            await self._pc.addIceCandidate(candidate)
        except Exception:  # e.g. no sdpMid/sdpMLineIndex, an address aioice cannot use
            # Whatever the other side sends, one bad candidate must not end a good link.
            self.bad_candidates += 1
            log.info("ignored a candidate aiortc would not take", room=self.room)

    # --- the data channel -------------------------------------------------------------------------

    def _use_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel

        @channel.on("open")
        def on_open() -> None:
            self._heard()

        @channel.on("close")
        def on_close() -> None:
            self._judge()

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            self._on_peer_data(data)

        if channel.readyState == "open":  # an answerer's channel arrives already open
            self._heard()

    def _on_peer_data(self, data: str | bytes) -> None:
        if self._closed:
            return
        try:
            message = parse_peer_message(data)
        except ValidationError:
            self.bad_messages += 1
            return
        if isinstance(message, Heartbeat):
            self.heartbeats_heard += 1
        else:
            self.reactions_heard += 1
        self._heard()
        if isinstance(message, Reaction):
            try:
                self._on_reaction(self, message.kind)
            except Exception:
                log.exception("the reaction handler failed", room=self.room)

    def _use_midi_channel(self, channel: RTCDataChannel) -> None:
        self._midi_channel = channel

        @channel.on("message")
        def on_message(data: str | bytes) -> None:
            self._on_midi_data(data)

    def _on_midi_data(self, data: str | bytes) -> None:
        if self._closed:
            return
        try:
            played = wire.decode(data)
        except MidiDataError as exc:
            # The peer's bytes are outside input: counted and logged, never fatal.
            self.bad_midi += 1
            log.info("ignored a bad MIDI batch from the peer", room=self.room, error=str(exc))
            return
        self.midi_batches_heard += 1
        if self._on_midi is None:
            return
        try:
            self._on_midi(self, played)
        except Exception:
            log.exception("the MIDI handler failed", room=self.room)

    def send_midi(self, batch: MidiEvents) -> bool:
        """Send one batch on the MIDI channel; False when it is not open (nothing is queued)."""
        channel = self._midi_channel
        if channel is None or channel.readyState != "open" or self._closed:
            return False
        channel.send(encode(batch))
        return True

    def send_reaction(self, kind: ReactionKind) -> bool:
        return self._send_peer(Reaction(kind=kind))

    def _send_peer(self, message: Reaction | Heartbeat) -> bool:
        channel = self._channel
        if channel is None or channel.readyState != "open" or self._closed:
            return False
        channel.send(encode(message))
        return True

    # --- liveness ---------------------------------------------------------------------------------

    def _heard(self) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        self._judge()

    async def _watch(self) -> None:
        seq = 0
        while True:
            await asyncio.sleep(self._settings.heartbeat_seconds)
            if self._send_peer(Heartbeat(seq=seq)):
                seq += 1
            self._judge()

    def _judge(self) -> None:
        """Work out alive/dead from the facts, and tell the owner when either changed."""
        if self._closed:
            return
        now = asyncio.get_running_loop().time()
        state = self.connection_state
        dead = self._dead or state in ("failed", "closed")
        if (
            not dead
            and not self._ever_alive
            and self._negotiating_since is not None
            and now - self._negotiating_since > self._settings.connect_seconds
        ):
            dead = True
        channel_open = self._channel is not None and self._channel.readyState == "open"
        alive = (
            not dead
            and state == "connected"
            and channel_open
            and now - self._last_heard <= self._settings.silence_seconds
        )
        if alive == self._alive and dead == self._dead:
            return
        self._alive, self._dead = alive, dead
        if alive:
            self._ever_alive = True
            self._report(up=True)
        else:
            self._report(up=False)
        if dead:
            log.info("link failed", room=self.room, connection=state)
        self._notify()

    def _report(self, *, up: bool) -> None:
        if up == self._reported_up:
            return
        if up and self._pc is not None:
            self.route = route_of(self._pc)
        self._reported_up = up
        log.info("link " + ("up" if up else "down"), room=self.room, route=self.route.value)
        self._signalling.report_link(self.room, up, self.route)

    def _notify(self) -> None:
        try:
            self._on_change(self)
        except Exception:
            log.exception("the link-change handler failed", room=self.room)

    # --- life -------------------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._closed:
                return  # torn down under a negotiation: expected, nothing to say
            log.exception("link negotiation failed", room=self.room)
            self._dead = True
            self._alive = False
            self._report(up=False)
            self._notify()

    def retire(self) -> None:
        """Stop counting as a link now: not alive, and the server told so at once. A ``Leave``
        sent next must follow the report, which the server only takes from a party in the room.
        ``close`` does the rest."""
        if self._closed:
            return
        self._closed = True
        self._alive = False
        self._report(up=False)

    async def close(self) -> None:
        """Tear everything down: tasks, data channel, peer connection, our microphone track."""
        if self._torn_down:
            return
        self._torn_down = True
        self.retire()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in (self._channel, self._midi_channel):
            if channel is not None:
                channel.close()
        if self._pc is not None:
            await self._pc.close()
        if self._track is not None:
            self._track.stop()  # the link owns the track the factory made for it
        self._early_candidates.clear()
