"""What can happen to the box. Each event is a fact; the machine decides what it means."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from session_server.protocol import Occurrence, Party, ReactionKind


@dataclass(frozen=True)
class Tick:
    """Time passes. ``now`` is the server's time as the box best knows it."""

    now: datetime


@dataclass(frozen=True)
class ServerUp:
    party: Party


@dataclass(frozen=True)
class ServerDown:
    pass


@dataclass(frozen=True)
class ScheduleChanged:
    occurrences: tuple[Occurrence, ...]


@dataclass(frozen=True)
class StartPressed:
    """A short press of START (released before the hold time)."""


@dataclass(frozen=True)
class StartHeld:
    """START held down for the hold time (3 s): leave."""


@dataclass(frozen=True)
class ReactPressed:
    kind: ReactionKind


@dataclass(frozen=True)
class VolumePressed:
    step: int  # +1 or -1


@dataclass(frozen=True)
class MutePressed:
    pass


@dataclass(frozen=True)
class JoinAccepted:
    room: str
    peer_present: bool


@dataclass(frozen=True)
class JoinRefused:
    room: str
    message: str


@dataclass(frozen=True)
class PeerJoined:
    room: str


@dataclass(frozen=True)
class PeerLeft:
    room: str


@dataclass(frozen=True)
class RoomEnded:
    """The server ended our place in the room (window over, cancelled, replaced)."""

    room: str
    message: str


@dataclass(frozen=True)
class LinkUp:
    room: str


@dataclass(frozen=True)
class LinkDown:
    """Media and heartbeats stopped arriving, or the peer connection failed."""

    room: str


@dataclass(frozen=True)
class ReactionArrived:
    kind: ReactionKind


@dataclass(frozen=True)
class AudioFailed:
    message: str


@dataclass(frozen=True)
class AudioRestored:
    pass


Event = (
    Tick
    | ServerUp
    | ServerDown
    | ScheduleChanged
    | StartPressed
    | StartHeld
    | ReactPressed
    | VolumePressed
    | MutePressed
    | JoinAccepted
    | JoinRefused
    | PeerJoined
    | PeerLeft
    | RoomEnded
    | LinkUp
    | LinkDown
    | ReactionArrived
    | AudioFailed
    | AudioRestored
)
