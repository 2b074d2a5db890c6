"""The box's life: a frozen model of what is true, a pure ``step`` from event to actions.

The model holds facts (is the server there, are we in a room, is the link up, is the microphone
muted …); the state shown on the lights is *derived* from them, so no combination of events can
leave the lights saying one thing while the box does another. ``step`` returns the new model and
the actions to carry out, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from device.lifecycle import actions as act
from device.lifecycle import events as ev
from device.lifecycle.states import Cue, State
from session_server.protocol import Occurrence, Party

VOLUME_STEPS = 10
DEFAULT_VOLUME = 6
ENDED_SHOWN_FOR = timedelta(seconds=20)
CHIME_EVERY = timedelta(minutes=5)
# A link that should be up but is not: try again this often. The side that made the last offer
# rebuilds at once; the other waits this long for it, then takes over (aiortc has no ICE restart).
LINK_RETRY = timedelta(seconds=10)

_ENTRY_CUES = {
    State.LIVE: Cue.CONNECTED,
    State.ENDED: Cue.ENDED,
    State.FAULT: Cue.PROBLEM,
}


@dataclass(frozen=True)
class Machine:
    now: datetime
    server_up: bool = False
    audio_ok: bool = True
    fault: str | None = None
    party: Party | None = None
    schedule: tuple[Occurrence, ...] = ()
    room: Occurrence | None = None  # the room START took us into
    joined: bool = False  # the server has us in that room
    peer_present: bool = False
    link_up: bool = False
    was_live: bool = False  # the link has been up since the peer (re)joined
    we_offer: bool = False  # we made the last offer, so we rebuild at once
    last_link_attempt: datetime | None = None
    ended_until: datetime | None = None
    chimed_at: datetime | None = None
    muted: bool = False
    volume: int = DEFAULT_VOLUME

    # --- what follows from the facts ---------------------------------------------------------

    @property
    def state(self) -> State:
        if not self.audio_ok:
            return State.FAULT
        if self.room is not None:
            if self.link_up:
                return State.LIVE
            if self.was_live:
                return State.RECONNECTING
            if self.joined and not self.peer_present:
                return State.WAITING
            return State.CONNECTING
        if self.ended_until is not None and self.now < self.ended_until:
            return State.ENDED
        if not self.server_up:
            return State.OFFLINE
        if self.open_occurrence is not None:
            return State.SESSION_SOON
        return State.IDLE

    @property
    def on_air(self) -> bool:
        """The microphone is sent (and the ON-AIR light lit) exactly when this is true."""
        return self.state is State.LIVE and not self.muted

    @property
    def open_occurrence(self) -> Occurrence | None:
        for occurrence in self.schedule:
            if occurrence.window_opens_at <= self.now < occurrence.window_closes_at:
                return occurrence
        return None

    @property
    def wants_link(self) -> bool:
        return (
            self.room is not None
            and self.joined
            and self.peer_present
            and not self.link_up
            and self.server_up
        )

    # --- life ----------------------------------------------------------------------------------

    @classmethod
    def initial(cls, now: datetime) -> tuple[Machine, list[act.Action]]:
        machine = cls(now=now)
        return machine, [
            act.ShowState(machine.state),
            act.SetOnAir(False),
            act.SetVolume(machine.volume),
        ]

    def step(self, event: ev.Event) -> tuple[Machine, list[act.Action]]:
        after, actions = self._apply(event)
        return after._present(self, actions)

    def _present(
        self, before: Machine, actions: list[act.Action]
    ) -> tuple[Machine, list[act.Action]]:
        """Add the lights and cues that follow from a change of state."""
        shown: list[act.Action] = []
        machine = self
        if machine.on_air != before.on_air and not machine.on_air:
            shown.append(act.SetOnAir(False))  # stop sending before anything else happens
        if machine.state is not before.state:
            shown.append(act.ShowState(machine.state))
            cue = _ENTRY_CUES.get(machine.state)
            if cue is not None:
                shown.append(act.PlayCue(cue))
        if machine.state is State.SESSION_SOON and (
            machine.chimed_at is None or machine.now - machine.chimed_at >= CHIME_EVERY
        ):
            shown.append(act.PlayCue(Cue.SESSION_SOON))
            machine = replace(machine, chimed_at=machine.now)
        result = shown + actions
        if machine.on_air != before.on_air and machine.on_air:
            result.append(act.SetOnAir(True))  # only once everything else is in place
        return machine, result

    def _apply(self, event: ev.Event) -> tuple[Machine, list[act.Action]]:
        match event:
            case ev.Tick(now=now):
                return replace(self, now=now)._on_time()
            case ev.ServerUp(party=party):
                up = replace(self, server_up=True, party=party, joined=False)
                return up, [act.Join(self.room.room)] if self.room is not None else []
            case ev.ServerDown():
                return replace(self, server_up=False, joined=False), []
            case ev.ScheduleChanged(occurrences=occurrences):
                return replace(self, schedule=occurrences), []
            case ev.StartPressed():
                return self._on_start()
            case ev.StartHeld():
                if self.room is None:
                    return self, [act.PlayCue(Cue.NOT_NOW)]
                return self._left(), [act.CloseLink(self.room.room), act.Leave(self.room.room)]
            case ev.ReactPressed(kind=kind):
                if self.state is not State.LIVE:
                    return self, [act.PlayCue(self._refusal_cue())]
                return self, [act.SendReaction(kind), act.PlayCue(Cue.SENT)]
            case ev.VolumePressed(step=step):
                return self._on_volume(step)
            case ev.MutePressed():
                if self.room is None or not self.audio_ok:
                    return self, [act.PlayCue(self._refusal_cue())]
                muted = not self.muted
                return replace(self, muted=muted), [
                    act.PlayCue(Cue.MUTED if muted else Cue.UNMUTED)
                ]
            case ev.JoinAccepted(room=room, peer_present=peer_present):
                if not self._in(room):
                    return self, [act.Leave(room)]  # an answer to a join we gave up on
                joined = replace(self, joined=True, peer_present=peer_present)
                if peer_present and not self.link_up:
                    return joined._open_link(offer=True)
                return joined, []
            case ev.JoinRefused(room=room):
                if not self._in(room):
                    return self, []
                return self._reset_room(), [act.PlayCue(Cue.NOT_NOW)]
            case ev.PeerJoined(room=room):
                if not self._in(room):
                    return self, []
                present = replace(self, peer_present=True, was_live=False)
                if self.link_up:
                    return present, []
                return present._open_link(offer=False)
            case ev.PeerLeft(room=room):
                if not self._in(room):
                    return self, []
                gone = replace(self, peer_present=False, link_up=False, was_live=False)
                return gone, [act.CloseLink(room)]
            case ev.RoomEnded(room=room):
                if not self._in(room):
                    return self, []
                return self._left(), [act.CloseLink(room)]
            case ev.LinkUp(room=room):
                if not self._in(room):
                    return self, [act.CloseLink(room)]
                return replace(self, link_up=True, was_live=True), []
            case ev.LinkDown(room=room):
                if not self._in(room) or not self.link_up:
                    return self, []  # already rebuilding, or never came up: Tick retries
                down = replace(self, link_up=False, was_live=True)
                if self.we_offer and down.wants_link:
                    return down._open_link(offer=True)
                return replace(down, last_link_attempt=self.now), []
            case ev.ReactionArrived(kind=kind):
                if self.state is not State.LIVE:
                    return self, []
                return self, [act.PlayCue(Cue.REACTION), act.FlashReaction(kind)]
            case ev.AudioFailed(message=message):
                return replace(self, audio_ok=False, fault=message), []
            case ev.AudioRestored():
                return replace(self, audio_ok=True, fault=None), []
        raise TypeError(f"not an event: {event!r}")  # pragma: no cover - exhaustive above

    # --- helpers -------------------------------------------------------------------------------

    def _in(self, room: str) -> bool:
        return self.room is not None and self.room.room == room

    def _refusal_cue(self) -> Cue:
        return Cue.PROBLEM if not self.audio_ok else Cue.NOT_NOW

    def _on_start(self) -> tuple[Machine, list[act.Action]]:
        if not self.audio_ok:
            return self, [act.PlayCue(Cue.PROBLEM)]
        occurrence = self.open_occurrence
        if self.room is not None or occurrence is None or not self.server_up:
            return self, [act.PlayCue(Cue.NOT_NOW)]
        joining = replace(self, room=occurrence, joined=False, ended_until=None)
        return joining, [act.PlayCue(Cue.JOINED), act.Join(occurrence.room)]

    def _on_volume(self, step: int) -> tuple[Machine, list[act.Action]]:
        if not self.audio_ok:
            return self, [act.PlayCue(Cue.PROBLEM)]
        volume = max(0, min(VOLUME_STEPS, self.volume + step))
        if volume == self.volume:
            return self, [act.PlayCue(Cue.NOT_NOW)]  # already as loud (or quiet) as it goes
        return replace(self, volume=volume), [act.SetVolume(volume), act.PlayCue(Cue.VOLUME)]

    def _open_link(self, *, offer: bool) -> tuple[Machine, list[act.Action]]:
        assert self.room is not None  # only called while in a room
        opened = replace(self, we_offer=offer, last_link_attempt=self.now)
        return opened, [act.OpenLink(self.room.room, offer=offer)]

    def _on_time(self) -> tuple[Machine, list[act.Action]]:
        room = self.room
        if room is not None and self.now >= room.window_closes_at:
            return self._left(), [act.CloseLink(room.room), act.Leave(room.room)]
        if (
            self.wants_link
            and self.last_link_attempt is not None
            and self.now - self.last_link_attempt >= LINK_RETRY
        ):
            return self._open_link(offer=True)
        return self, []

    def _reset_room(self) -> Machine:
        return replace(
            self,
            room=None,
            joined=False,
            peer_present=False,
            link_up=False,
            was_live=False,
            we_offer=False,
            last_link_attempt=None,
            muted=False,  # a private moment ends with the session, never carries into the next
        )

    def _left(self) -> Machine:
        return replace(self._reset_room(), ended_until=self.now + ENDED_SHOWN_FOR)
