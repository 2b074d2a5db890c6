"""What the machine asks the rest of the box to do."""

from __future__ import annotations

from dataclasses import dataclass

from device.lifecycle.states import Cue, State
from session_server.protocol import ReactionKind


@dataclass(frozen=True)
class ShowState:
    """Set the status light to this state's pattern."""

    state: State


@dataclass(frozen=True)
class FlashReaction:
    """Flash the status light once for a reaction from the other side."""

    kind: ReactionKind


@dataclass(frozen=True)
class SetOnAir:
    """The ON-AIR light, and whether the microphone is sent: always changed together."""

    on: bool


@dataclass(frozen=True)
class PlayCue:
    cue: Cue


@dataclass(frozen=True)
class SetVolume:
    level: int  # 0 … VOLUME_STEPS


@dataclass(frozen=True)
class Join:
    room: str


@dataclass(frozen=True)
class Leave:
    room: str


@dataclass(frozen=True)
class OpenLink:
    """Build a new peer connection for the room: make the offer, or wait for the other's."""

    room: str
    offer: bool


@dataclass(frozen=True)
class CloseLink:
    room: str


@dataclass(frozen=True)
class SendReaction:
    kind: ReactionKind


Action = (
    ShowState
    | FlashReaction
    | SetOnAir
    | PlayCue
    | SetVolume
    | Join
    | Leave
    | OpenLink
    | CloseLink
    | SendReaction
)
