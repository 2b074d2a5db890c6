"""The box's states, each with its own light pattern and sound cue (see DESIGN.md)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    OFFLINE = "offline"  # no server, no session
    IDLE = "idle"  # connected, nothing scheduled right now
    SESSION_SOON = "session_soon"  # a window is open: glow and chime, waiting for START
    WAITING = "waiting"  # in the room, the other side has not joined
    CONNECTING = "connecting"  # joining the room, or the link is being built
    LIVE = "live"  # audio both ways
    RECONNECTING = "reconnecting"  # the link was live and is being rebuilt
    ENDED = "ended"  # just left; shown for a little while
    FAULT = "fault"  # the box cannot do its job (e.g. no sound card)


class Cue(StrEnum):
    """Short sounds. Every press gets one, even when it means nothing now."""

    SESSION_SOON = "session_soon"
    JOINED = "joined"
    CONNECTED = "connected"
    REACTION = "reaction"
    SENT = "sent"
    ENDED = "ended"
    NOT_NOW = "not_now"
    PROBLEM = "problem"
    VOLUME = "volume"
    MUTED = "muted"
    UNMUTED = "unmuted"
