"""The sound cards PortAudio can see, and which one the settings mean.

    cards = list_cards()                      # a fresh look: cards plugged in since are seen
    mic = resolve("Jabra", Direction.INPUT, cards)
    mic.index, mic.name                       # what to open

A name in the settings is ``"default"`` (PortAudio's default for that direction; see below) or a
case-insensitive part of a card's name; an exact name wins over a partial one, and among partial
matches the first PortAudio lists (real ``hw`` cards come before plugins). When nothing matches,
``AudioError`` names every card that was found and the setting to change.

PortAudio reads the list of cards once, when it starts; to see a card plugged in later it has to
be shut down and started again, which would also end every stream this process has open. So a
fresh look is taken only while no stream is open (``streams`` counts them); otherwise the list is
the one PortAudio already has.

On a box, ``"default"`` needs care: with pipewire-alsa installed, ALSA's default device is
PipeWire's plugin, which opens only where a PipeWire server runs for this user. The box runs as a
system service with no login session, so none does: there, ``"default"`` means the first hardware
card (``hw:…``) for that direction instead, which is what a technician who plugged in one
speakerphone means.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import sounddevice as sd

from device.errors import AudioError


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"

    @property
    def noun(self) -> str:
        return "microphone" if self is Direction.INPUT else "speaker"

    @property
    def setting(self) -> str:
        return f"audio.{self.value} (TWM_DEVICE_AUDIO__{self.value.upper()})"


@dataclass(frozen=True)
class Card:
    """One device as PortAudio lists it (a card can be listed once per direction it has)."""

    index: int
    name: str
    inputs: int
    outputs: int
    default_samplerate: float

    def channels(self, direction: Direction) -> int:
        return self.inputs if direction is Direction.INPUT else self.outputs

    @property
    def hardware(self) -> bool:
        """An ALSA hardware device (``… (hw:1,0)``), not a plugin such as ``default``."""
        return "(hw:" in self.name


def sound_server_running() -> bool:
    """Whether a PipeWire (or PulseAudio) server runs for this user: its socket is in the
    runtime directory, which only a login session (or lingering) gives."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        return False
    return any((Path(runtime) / socket).exists() for socket in ("pipewire-0", "pulse/native"))


class _OpenStreams:
    """How many streams this process has open; PortAudio may only restart when there are none."""

    def __init__(self) -> None:
        # Re-entrant: a card is resolved and its streams opened while the lock is held.
        self._lock = threading.RLock()
        self._count = 0

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the lock while deciding: a stream opening meanwhile would be cut by a restart."""
        with self._lock:
            yield

    def opened(self) -> None:
        with self._lock:
            self._count += 1

    def closed(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)

    def unlocked_count(self) -> int:
        return self._count


streams = _OpenStreams()


def list_cards(*, refresh: bool = True) -> list[Card]:
    """Every device PortAudio sees; with ``refresh``, restarts PortAudio first if it may."""
    with streams.holding():
        if refresh and streams.unlocked_count() == 0:
            _restart_portaudio()
        try:
            found: Sequence[dict[str, Any]] = sd.query_devices()
        except sd.PortAudioError as exc:
            raise AudioError(f"cannot list the sound cards: {exc}") from None
    return [
        Card(
            index=int(info["index"]),
            name=str(info["name"]),
            inputs=int(info["max_input_channels"]),
            outputs=int(info["max_output_channels"]),
            default_samplerate=float(info["default_samplerate"]),
        )
        for info in found
    ]


def _restart_portaudio() -> None:
    # sounddevice has no public call for this; these two are what its own docs point to.
    sd._terminate()
    sd._initialize()


def default_index(direction: Direction) -> int | None:
    """PortAudio's default device for ``direction``, or None when it has none."""
    try:
        info: dict[str, Any] = sd.query_devices(kind=direction.value)
    except (sd.PortAudioError, ValueError):
        return None
    return int(info["index"])


def resolve(
    wanted: str,
    direction: Direction,
    cards: Sequence[Card],
    default: int | None = None,
    *,
    sound_server: bool | None = None,
) -> Card:
    """The card ``wanted`` names for ``direction``, or ``AudioError`` listing what was found.

    ``default`` is PortAudio's default device index for ``direction`` (``default_index``);
    ``sound_server``: whether one runs for this process (None: look, ``sound_server_running``).
    """
    usable = [card for card in cards if card.channels(direction) > 0]
    key = wanted.strip().casefold()
    if key == "default":
        chosen = next((card for card in usable if card.index == default), None)
        if chosen is None:
            chosen = next((card for card in usable if card.name.casefold() == "default"), None)
        if sound_server is None:
            sound_server = sound_server_running()
        if chosen is not None and not chosen.hardware and not sound_server:
            # A plugin that needs a sound server, with none running: see the module's notes.
            chosen = next((card for card in usable if card.hardware), chosen)
        if chosen is not None:
            return chosen
        raise AudioError(
            f"no default {direction.noun} — found: {_names(usable)}; "
            f"plug in the sound card, or set {direction.setting}"
        )
    exact = [card for card in usable if card.name.casefold() == key]
    partial = [card for card in usable if key and key in card.name.casefold()]
    if exact or partial:
        return (exact or partial)[0]
    raise AudioError(
        f"no {direction.noun} named {wanted!r} — found: {_names(usable)}; set {direction.setting}"
    )


def _names(cards: Sequence[Card]) -> str:
    return ", ".join(card.name for card in cards) or "no sound card at all"
