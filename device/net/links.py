"""Carries out the lifecycle's link actions with at most one live ``Link``, and routes the
server's offers, answers and candidates to it.

- ``OpenLink(room, offer)`` replaces whatever link there was with a new one that offers, or that
  waits for the other side's offer (which may already be here: it is kept until asked for).
- ``CloseLink(room)`` tears the link down. ``SendReaction(kind)`` sends on its data channel.
- An offer that arrives while we have a link replaces it with one that answers: the other side
  (the school page, a box) rebuilds a lost link by offering anew. Except during *glare*, when
  both sides offered at once: the care-home box is impolite (it keeps its own offer and ignores
  the other), a school box polite (it drops its own and answers), so exactly one offer wins.

Events: ``LinkUp(room)`` when the current link comes alive, ``LinkDown(room)`` when a link that
was reported up is no longer alive (silence, failure, or a replacement that never came up),
``ReactionArrived(kind)``. Closing on request emits nothing: the lifecycle asked for it.

MIDI: ``send_midi`` sends a batch on the current link; ``on_midi`` gets what arrives on it (never
from a link already replaced). ``on_link_ended`` is called whenever the link the notes came on can
no longer be trusted to bring their note-offs: it went down, or it was closed or replaced, for
whatever reason (the lifecycle's CloseLink or OpenLink, the other side's new offer, shutdown).
The MIDI bridge then silences what it was playing (``device.midi.bridge``).

State changes at once when an action is performed; negotiation and teardown run in tasks the
manager tracks. Signalling messages reach the manager at once, in the server's order, while the
lifecycle's actions may come later (the agent queues events): so when the other side has left
and comes back with a new offer before the lifecycle's CloseLink for its departure, that offer is
kept for the OpenLink that follows instead of being answered by a link about to be closed.

    links = LinkManager(client, on_event, role=PartyKind.CARE_HOME,
                        microphone=make_mic_track, on_remote_audio=engine.play_remote)
    links.perform(OpenLink(room, offer=True))
    ...
    await links.aclose()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiortc import MediaStreamTrack

from device.lifecycle.actions import CloseLink, OpenLink, SendReaction
from device.lifecycle.events import Event, LinkDown, LinkUp, ReactionArrived
from device.midi.wire import Timed
from device.net.link import Link, RemoteAudio
from device.net.link_settings import LinkSettings
from device.net.signalling import PeerSignal, SignallingClient
from session_server.protocol import (
    Answer,
    Candidate,
    MidiEvents,
    Offer,
    PartyKind,
    Presence,
    ReactionKind,
)

log = structlog.get_logger("twm.device.links")

LinkAction = OpenLink | CloseLink | SendReaction


@dataclass
class _PendingOffer:
    """The other side's offer that came before we asked for a link to answer it."""

    room: str
    sdp: str
    candidates: list[Candidate] = field(default_factory=list)


def is_polite(role: PartyKind) -> bool:
    """Who gives way when both sides offer at once: the school side."""
    return role is PartyKind.SCHOOL


class LinkManager:
    def __init__(
        self,
        signalling: SignallingClient,
        on_event: Callable[[Event], None],
        *,
        role: PartyKind,
        microphone: Callable[[], MediaStreamTrack],
        on_remote_audio: RemoteAudio,
        settings: LinkSettings | None = None,
        tune_sdp: Callable[[str], str] | None = None,
        on_midi: Callable[[list[Timed]], None] | None = None,
        on_link_ended: Callable[[], None] | None = None,
    ) -> None:
        self._signalling = signalling
        self._on_midi = on_midi
        self._on_link_ended = on_link_ended
        self._tune_sdp = tune_sdp
        self._on_event = on_event
        self._polite = is_polite(role)
        self._microphone = microphone
        self._on_remote_audio = on_remote_audio
        self._settings = settings if settings is not None else LinkSettings()
        self._link: Link | None = None
        self._pending: _PendingOffer | None = None
        self._reported_up = False  # the lifecycle was told LinkUp for the current room
        # The other side left this room since our last open/close: the lifecycle's CloseLink
        # for that is on its way, so a new offer waits for the OpenLink after it.
        self._peer_left: str | None = None
        self._teardowns: set[asyncio.Task[None]] = set()
        self._closed = False
        self._unsubscribe = signalling.subscribe(self._on_signal)

    @property
    def link(self) -> Link | None:
        """The current link (alive, connecting, waiting for an offer, or dead), if any."""
        return self._link

    # --- the lifecycle's actions ------------------------------------------------------------------

    def perform(self, action: LinkAction) -> None:
        match action:
            case OpenLink(room=room, offer=offer):
                self.open(room, offer=offer)
            case CloseLink(room=room):
                self.close(room)
            case SendReaction(kind=kind):
                self.send_reaction(kind)

    def open(self, room: str, *, offer: bool) -> None:
        """A new link for the room, replacing the current one."""
        if self._closed:
            return
        self._retire()
        self._reported_up = False
        self._peer_left = None
        pending = self._take_pending(room)
        if pending is not None and offer and not self._polite:
            log.info("glare: keeping our own offer, dropping theirs", room=room)
            pending = None
        if pending is not None:
            if offer:
                log.info("glare: answering their offer instead of making ours", room=room)
            self._answer(pending)
        else:
            self._install(room, offer=offer).start()

    def close(self, room: str) -> None:
        if self._peer_left == room:
            self._peer_left = None
        link = self._link
        if link is None or link.room != room:
            return
        self._retire()
        self._reported_up = False

    def send_reaction(self, kind: ReactionKind) -> bool:
        link = self._link
        if link is None or not link.send_reaction(kind):
            log.info("a reaction could not be sent: no live link", kind=kind.value)
            return False
        return True

    def send_midi(self, batch: MidiEvents) -> bool:
        """Send on the current link's MIDI channel; False when there is none open."""
        link = self._link
        return link is not None and link.send_midi(batch)

    async def aclose(self) -> None:
        """Close the link and wait until every teardown has finished."""
        self._closed = True
        self._unsubscribe()
        self._retire()
        self._pending = None
        while self._teardowns:
            await asyncio.gather(*list(self._teardowns), return_exceptions=True)

    # --- signalling -------------------------------------------------------------------------------

    def _on_signal(self, message: PeerSignal) -> None:
        if self._closed:
            return
        match message:
            case Presence(room=room, present=False):
                # Whatever they offered belongs to a connection that has gone.
                if self._pending is not None and self._pending.room == room:
                    self._pending = None
                if self._link is not None and self._link.room == room:
                    self._peer_left = room
            case Offer():
                self._on_offer(message)
            case Answer():
                link = self._link
                if link is not None and link.room == message.room:
                    link.accept_answer(message.sdp)
            case Candidate():
                link = self._link
                if link is not None and link.room == message.room:
                    link.add_candidate(message)
                elif self._pending is not None and self._pending.room == message.room:
                    self._pending.candidates.append(message)

    def _on_offer(self, offer: Offer) -> None:
        link = self._link
        if link is None or link.room != offer.room or self._peer_left == offer.room:
            # Not asked for a link to answer it yet (OpenLink follows PeerJoined): keep it.
            self._pending = _PendingOffer(offer.room, offer.sdp)
        elif link.awaiting_offer:
            link.accept_offer(offer.sdp)
        elif link.offering and not self._polite:
            log.info("glare: ignoring their offer while ours is outstanding", room=offer.room)
        else:
            if link.offering:
                log.info("glare: dropping our offer to answer theirs", room=offer.room)
            else:
                log.info("the other side offered a new connection: replacing ours")
            # The lifecycle is not told LinkDown here: the new link carries on the same session
            # and says LinkDown itself if it never comes up.
            self._retire()
            self._answer(_PendingOffer(offer.room, offer.sdp))

    def _take_pending(self, room: str) -> _PendingOffer | None:
        pending, self._pending = self._pending, None
        if pending is None or pending.room != room or self._signalling.room != room:
            return None
        return pending

    def _answer(self, offer: _PendingOffer) -> None:
        link = self._install(offer.room, offer=False)
        link.start(offer.sdp)
        for candidate in offer.candidates:
            link.add_candidate(candidate)

    # --- links ------------------------------------------------------------------------------------

    def _install(self, room: str, *, offer: bool) -> Link:
        link = Link(
            room,
            offer=offer,
            ice_servers=self._signalling.ice_servers(room),
            signalling=self._signalling,
            microphone=self._microphone,
            on_remote_audio=self._on_remote_audio,
            on_change=self._on_link_change,
            on_reaction=self._on_reaction,
            settings=self._settings,
            tune_sdp=self._tune_sdp,
            on_midi=self._on_link_midi,
        )
        self._link = link
        log.info("link opening", room=room, offer=offer)
        return link

    def _retire(self) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        link.retire()  # at once: the report of its end goes before any Leave that follows
        self._link_ended()
        task = asyncio.get_running_loop().create_task(link.close(), name="link-close")
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    def _on_link_change(self, link: Link) -> None:
        if link is not self._link:
            return
        if link.alive and not self._reported_up:
            self._reported_up = True
            self._emit(LinkUp(link.room))
        elif not link.alive and self._reported_up:
            self._reported_up = False
            self._link_ended()
            self._emit(LinkDown(link.room))

    def _on_link_midi(self, link: Link, played: list[Timed]) -> None:
        if link is not self._link or self._on_midi is None:
            return  # a replaced link's last notes: their note-offs may never come
        try:
            self._on_midi(played)
        except Exception:
            log.exception("handling MIDI from the link failed")

    def _link_ended(self) -> None:
        if self._on_link_ended is None:
            return
        try:
            self._on_link_ended()
        except Exception:
            log.exception("handling the end of a link's MIDI failed")

    def _on_reaction(self, link: Link, kind: ReactionKind) -> None:
        if link is self._link:
            self._emit(ReactionArrived(kind))

    def _emit(self, event: Event) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("handling a link event failed", event=type(event).__name__)
