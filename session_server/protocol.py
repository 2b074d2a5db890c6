"""Every message that crosses the signalling WebSocket or the peers' data channel.

The server and the device both import this module, so the two sides cannot drift apart.
Messages are pydantic models in discriminated unions keyed on ``type``; parse incoming text with
:func:`parse_client_message`, :func:`parse_server_message` or :func:`parse_peer_message` and send
with :func:`encode`.

A session on the wire::

    client → server   hello {device_token | ticket}
    server → client   welcome {party}, then schedule {occurrences}
    client → server   join {room}
    server → client   joined {room, ice_servers, peer_present}   (or error {code, message})
    server → both     presence {room, party, present}
    peers via server  offer / answer / candidate {room, …}
    client → server   link {room, state, route}   (for the audit log)
    client → server   leave {room}

Whoever joins second (``joined.peer_present`` is true) sends the offer.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    model_validator,
)

ROOM_PATTERN = r"^s[0-9]{1,12}@[0-9]{8}T[0-9]{4}Z$"
_ROOM_RE = re.compile(ROOM_PATTERN)

MAX_SDP_CHARS = 32_000
MAX_CANDIDATE_CHARS = 1_000


class PartyKind(StrEnum):
    CARE_HOME = "care_home"
    SCHOOL = "school"


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTH_FAILED = "auth_failed"
    NO_SUCH_ROOM = "no_such_room"
    NOT_YOUR_SESSION = "not_your_session"
    NOT_OPEN_YET = "not_open_yet"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    NOT_IN_ROOM = "not_in_room"
    PEER_ABSENT = "peer_absent"
    REPLACED = "replaced"
    INTERNAL = "internal"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Room = Annotated[str, Field(pattern=ROOM_PATTERN, description="s<session id>@<start UTC>")]


def room_id(session_id: int, starts_at: datetime) -> str:
    """The room of one occurrence: ``s12@20261124T1400Z`` (start in UTC, to the minute)."""
    return f"s{session_id}@{starts_at.strftime('%Y%m%dT%H%MZ')}"


def parse_room(room: str) -> tuple[int, datetime]:
    """Split a room id into its session id and occurrence start (UTC)."""
    if not _ROOM_RE.match(room):
        raise ValueError(f"{room!r} is not a room id")
    session_part, start_part = room[1:].split("@")
    return int(session_part), datetime.strptime(start_part, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)


class Party(BaseModel):
    """One side of a session: a care home or a school (by any of its devices or its page)."""

    model_config = ConfigDict(frozen=True)

    kind: PartyKind
    id: int
    name: str


class IceServer(BaseModel):
    """One entry of RTCConfiguration.iceServers, in the browser's spelling."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Occurrence(BaseModel):
    """One meeting of a session, as a party sees it in its schedule."""

    room: Room
    session_id: int
    title: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    window_opens_at: AwareDatetime
    window_closes_at: AwareDatetime
    care_home: Party
    school: Party


# --- client → server -------------------------------------------------------------------------


class Hello(_Message):
    """First message on a new connection: a device token or a school-page ticket."""

    type: Literal["hello"] = "hello"
    device_token: SecretStr | None = Field(default=None, max_length=200)
    ticket: SecretStr | None = Field(default=None, max_length=500)


class Join(_Message):
    type: Literal["join"] = "join"
    room: Room


class Leave(_Message):
    type: Literal["leave"] = "leave"
    room: Room


class Offer(_Message):
    type: Literal["offer"] = "offer"
    room: Room
    sdp: str = Field(max_length=MAX_SDP_CHARS)


class Answer(_Message):
    type: Literal["answer"] = "answer"
    room: Room
    sdp: str = Field(max_length=MAX_SDP_CHARS)


class Candidate(_Message):
    """A trickled ICE candidate; ``candidate`` is None for end-of-candidates."""

    type: Literal["candidate"] = "candidate"
    room: Room
    candidate: str | None = Field(default=None, max_length=MAX_CANDIDATE_CHARS)
    sdp_mid: str | None = Field(default=None, max_length=64)
    sdp_mline_index: int | None = Field(default=None, ge=0, le=64)


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"


class Route(StrEnum):
    DIRECT = "direct"
    RELAY = "relay"
    UNKNOWN = "unknown"


class LinkReport(_Message):
    """A party tells the audit log its media link went up or down, and how it is routed."""

    type: Literal["link"] = "link"
    room: Room
    state: LinkState
    route: Route = Route.UNKNOWN


ClientMessage = Annotated[
    Hello | Join | Leave | Offer | Answer | Candidate | LinkReport, Field(discriminator="type")
]
RELAYED_TYPES = frozenset({"offer", "answer", "candidate"})


# --- server → client -------------------------------------------------------------------------


class Welcome(_Message):
    """Who the server knows you as, and its clock (a box with a wrong clock must not guess
    windows from its own)."""

    type: Literal["welcome"] = "welcome"
    party: Party
    server_time: AwareDatetime


class Schedule(_Message):
    """The party's occurrences from now to the horizon; sent again whenever it changes."""

    type: Literal["schedule"] = "schedule"
    occurrences: list[Occurrence]


class Joined(_Message):
    type: Literal["joined"] = "joined"
    room: Room
    ice_servers: list[IceServer]
    peer_present: bool
    window_closes_at: AwareDatetime


class Presence(_Message):
    type: Literal["presence"] = "presence"
    room: Room
    party: Party
    present: bool


class Error(_Message):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    room: str | None = None


ServerMessage = Annotated[
    Welcome | Schedule | Joined | Presence | Offer | Answer | Candidate | Error,
    Field(discriminator="type"),
]


# --- peer ↔ peer over the data channel -------------------------------------------------------


class ReactionKind(StrEnum):
    CLAP = "clap"
    HEART = "heart"
    WAVE = "wave"


class Reaction(_Message):
    type: Literal["reaction"] = "reaction"
    kind: ReactionKind


class Heartbeat(_Message):
    """Sent every second each way; a silent data channel means the link is gone."""

    type: Literal["heartbeat"] = "heartbeat"
    seq: int = Field(ge=0)


# --- MIDI over the data channel ----------------------------------------------------------------
#
# Notes and controllers played in one room, for the other room's synth. Only whole MIDI 1.0
# channel-voice messages travel (note on/off, polyphonic and channel aftertouch, control change,
# program change, pitch bend): clock, sysex and active sensing mean nothing to the far side's
# synth, and a sysex could reprogram it. Each event carries the sender's monotonic clock in ms, so
# the receiver can keep the rhythm however the packets arrive (``device.midi.playout``).

# MIDI has a data channel of its own (ordered and reliable: a lost note-off is a stuck note), so
# a burst of notes never queues in front of the heartbeats that tell whether the link is alive.
MIDI_DATA_CHANNEL_LABEL = "twm-midi"
MAX_MIDI_EVENTS = 256  # far more than hands play in one batch; bounds what a peer can make us hold
# Data bytes after each channel-voice status (high nibble); every other status is refused.
CHANNEL_VOICE_DATA_BYTES: dict[int, int] = {
    0x80: 2,  # note off
    0x90: 2,  # note on (velocity 0 means note off)
    0xA0: 2,  # polyphonic aftertouch
    0xB0: 2,  # control change
    0xC0: 1,  # program change
    0xD0: 1,  # channel aftertouch
    0xE0: 2,  # pitch bend
}


class MidiEvent(_Message):
    """One whole channel-voice message and when the sender's instrument played it."""

    t_ms: float = Field(
        ge=0, le=2**53, allow_inf_nan=False, description="sender's monotonic clock, ms"
    )
    data: list[Annotated[int, Field(ge=0, le=255)]] = Field(min_length=2, max_length=3)

    @model_validator(mode="after")
    def _whole_channel_voice(self) -> MidiEvent:
        status = self.data[0]
        expected = CHANNEL_VOICE_DATA_BYTES.get(status & 0xF0) if status >= 0x80 else None
        if expected is None:
            raise ValueError(f"status byte {status:#04x} is not a channel-voice message")
        if len(self.data) != 1 + expected:
            raise ValueError(
                f"status {status:#04x} takes {expected} data byte(s), got {len(self.data) - 1}"
            )
        if any(byte > 0x7F for byte in self.data[1:]):
            raise ValueError("MIDI data bytes are 0-127")
        return self


class MidiEvents(_Message):
    """A batch of MIDI events in the order they were played."""

    type: Literal["midi"] = "midi"
    events: list[MidiEvent] = Field(min_length=1, max_length=MAX_MIDI_EVENTS)


PeerMessage = Annotated[Reaction | Heartbeat | MidiEvents, Field(discriminator="type")]

DATA_CHANNEL_LABEL = "twm"

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
_peer_adapter: TypeAdapter[PeerMessage] = TypeAdapter(PeerMessage)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one message a client sent; raises ``pydantic.ValidationError`` on anything wrong."""
    return _client_adapter.validate_json(text)


def parse_server_message(text: str | bytes) -> ServerMessage:
    return _server_adapter.validate_json(text)


def parse_peer_message(text: str | bytes) -> PeerMessage:
    return _peer_adapter.validate_json(text)


def encode(message: BaseModel) -> str:
    """JSON for the wire. Secrets stay masked, so a server reply can never echo one back."""
    return message.model_dump_json(exclude_none=True)


def encode_hello(hello: Hello) -> str:
    """The one message whose secret must really travel: the client's own credential."""
    body: dict[str, str] = {"type": "hello"}
    if hello.device_token is not None:
        body["device_token"] = hello.device_token.get_secret_value()
    if hello.ticket is not None:
        body["ticket"] = hello.ticket.get_secret_value()
    return json.dumps(body)
