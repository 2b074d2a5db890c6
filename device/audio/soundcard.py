"""The sound card behind a small Protocol, and the real one on sounddevice (PortAudio).

    card = sounddevice_card(settings.audio)   # resolves the names; AudioError if one is missing
    card.start(handler)                       # handler.on_input / on_output run on audio threads
    ...
    card.stop()

Input and output may be different cards, so each direction is its own PortAudio stream, and each
stream's callback is the clock for its direction: 48 kHz, mono, 10 ms blocks. Callbacks run on
PortAudio's threads; whoever handles them hands over to asyncio with
``loop.call_soon_threadsafe``.

Each stream's callback thread asks for real-time scheduling (``SCHED_FIFO``) on its first call,
and keeps its ordinary priority where the system refuses (``realtime`` says which).

A card can fail in three ways, all reported through ``handler.on_error`` or ``check()``:
a stream finishes without being asked (PortAudio gave up: the card was unplugged), a callback
raises, or the callbacks simply stop coming — PortAudio on PipeWire does that when the node it was
linked to disappears, or when it opens a node that is not there (see ``tests/pipewire.py``).

On PipeWire a capture stream whose source disappears is quietly moved to the default source
unless the stream says ``node.dont-reconnect``; the microphone stream is opened with that
property (through ``PIPEWIRE_PROPS``, which PipeWire's ALSA plugin reads when the stream is
created) so that a vanished microphone is a fault rather than a different microphone. The speaker
stream is not: PortAudio 19.6 spins on an error loop (millions of log lines a second) when a
playback node is destroyed under it, so a vanished speaker alone goes to the default sink.

With ``audio.echo_cancel = "pipewire"`` the card is PipeWire's echo canceller in front of the
cards the settings name (``device.audio.echo``): it is loaded by ``start`` (AudioError saying what
to do when it cannot be), both streams are opened on PortAudio's ``pipewire`` device with
``PIPEWIRE_NODE`` naming the canceller's source or sink, and ``stop`` unloads it. A card behind
the canceller vanishing is reported by ``check()``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import sounddevice as sd

from device.audio.cards import Card, Direction, default_index, list_cards, resolve, streams
from device.audio.echo import EchoCanceller, pipewire_device
from device.audio.format import BLOCK_FRAMES, SAMPLE_RATE
from device.errors import AudioError
from device.settings import AudioSettings

PIPEWIRE_CAPTURE_PROPS = "{ node.dont-reconnect = true }"
STALL_SECONDS = 2.0  # generous: a loaded machine can starve a callback thread for a while
# Above every ordinary process, below PipeWire's own threads (88): a callback that is late by a
# block is a click, and through PipeWire's echo canceller it also shifts the canceller's timing
# (measured: 21-29 dB of echo removed instead of 70-80 on a busy machine without it).
REALTIME_PRIORITY = 20


class CardHandler(Protocol):
    """What a running card calls. ``on_input`` and ``on_output`` run on audio threads."""

    def on_input(self, block: npt.NDArray[np.int16]) -> None:
        """One block from the microphone; the array is only valid during the call."""

    def on_output(self, out: npt.NDArray[np.float32]) -> None:
        """Fill ``out`` (mono, -1…1) with what the speaker plays next."""

    def on_error(self, message: str) -> None:
        """The card failed; may be called from any thread."""


class SoundCard(Protocol):
    """A microphone and a speaker, clocked by the card."""

    @property
    def input_name(self) -> str: ...

    @property
    def output_name(self) -> str: ...

    def start(self, handler: CardHandler) -> None:
        """Open and start both directions, or raise ``AudioError``."""

    def stop(self) -> None:
        """Stop both directions; no callback runs after this returns."""

    def check(self) -> str | None:
        """A problem noticed without any callback (the callbacks stopped), or None."""

    def flowing(self) -> bool:
        """Both directions have called back since ``start``."""


CardFactory = Callable[[AudioSettings], SoundCard]


def sounddevice_card(settings: AudioSettings) -> SoundDeviceCard:
    """The real card the settings name, looked up afresh (``AudioError`` if one is missing)."""
    with streams.holding():
        cards = list_cards()
        if settings.echo_cancel == "pipewire":
            device = pipewire_device(cards)
            return SoundDeviceCard(device, device, canceller=EchoCanceller(settings))
        mic = resolve(settings.input, Direction.INPUT, cards, default_index(Direction.INPUT))
        speaker = resolve(settings.output, Direction.OUTPUT, cards, default_index(Direction.OUTPUT))
    return SoundDeviceCard(mic, speaker)


class SoundDeviceCard:
    """Two PortAudio streams: the microphone (int16) and the speaker (float32), on the cards
    themselves or, with a ``canceller``, on its echo-cancelled nodes (``mic`` and ``speaker``
    are then PortAudio's ``pipewire`` device)."""

    def __init__(
        self,
        mic: Card,
        speaker: Card,
        *,
        canceller: EchoCanceller | None = None,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mic = mic
        self.speaker = speaker
        self.canceller = canceller
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._handler: CardHandler | None = None
        self._input: sd.InputStream | None = None
        self._output: sd.OutputStream | None = None
        self._stopping = threading.Event()
        self._started_at = 0.0
        self._last_input: float | None = None
        self._last_output: float | None = None
        self._mono_out = np.zeros(BLOCK_FRAMES, dtype=np.float32)
        self.glitches = 0  # overflows and underflows PortAudio reported
        # Whether each direction's callback thread got real-time scheduling (None: not yet run).
        self.realtime: dict[Direction, bool | None] = dict.fromkeys(Direction)

    @property
    def input_name(self) -> str:
        return self.canceller.input_name if self.canceller is not None else self.mic.name

    @property
    def output_name(self) -> str:
        return self.canceller.output_name if self.canceller is not None else self.speaker.name

    def start(self, handler: CardHandler) -> None:
        self._handler = handler
        self._stopping.clear()
        self._last_input = self._last_output = None
        source = sink = None
        if self.canceller is not None:
            self.canceller.start()
            source, sink = self.canceller.source_node, self.canceller.sink_node
        try:
            with streams.holding():
                with _pipewire_stream(node=source, props=PIPEWIRE_CAPTURE_PROPS):
                    self._input = self._open(Direction.INPUT)
                with _pipewire_stream(node=sink, props=None):
                    self._output = self._open(Direction.OUTPUT)
                self._started_at = self._clock()
                self._input.start()
                self._output.start()
        except sd.PortAudioError as exc:
            self.stop()
            raise AudioError(
                f"cannot use the sound card (microphone {self.mic.name!r}, speaker "
                f"{self.speaker.name!r}): {exc}"
            ) from None

    def stop(self) -> None:
        self._stopping.set()
        for stream in (self._input, self._output):
            if stream is None:
                continue
            try:
                stream.abort()
                stream.close()
            except sd.PortAudioError:
                pass  # a card that is gone cannot be closed any better than this
            finally:
                streams.closed()
        self._input = self._output = None
        if self.canceller is not None:
            self.canceller.stop()  # after the streams: nothing is linked to what it unloads

    def check(self) -> str | None:
        if self.canceller is not None and (problem := self.canceller.problem()) is not None:
            return problem
        now = self._clock()
        for direction, last in (
            (Direction.INPUT, self._last_input),
            (Direction.OUTPUT, self._last_output),
        ):
            since = last if last is not None else self._started_at
            if now - since > self._stall_seconds:
                return (
                    f"the {direction.noun} ({self._card(direction).name}) stopped: "
                    "was the sound card unplugged?"
                )
        return None

    def flowing(self) -> bool:
        return self._last_input is not None and self._last_output is not None

    def _card(self, direction: Direction) -> Card:
        return self.mic if direction is Direction.INPUT else self.speaker

    def _open(self, direction: Direction) -> Any:
        card = self._card(direction)
        # Some USB cards only open in stereo; the box is mono, so it uses the first channel.
        attempts = [1] + ([2] if card.channels(direction) >= 2 else [])
        for channels in attempts:
            try:
                if direction is Direction.INPUT:
                    stream: Any = sd.InputStream(
                        device=card.index,
                        samplerate=SAMPLE_RATE,
                        blocksize=BLOCK_FRAMES,
                        channels=channels,
                        dtype="int16",
                        latency="low",
                        callback=self._input_callback,
                        finished_callback=self._finished(direction),
                    )
                else:
                    stream = sd.OutputStream(
                        device=card.index,
                        samplerate=SAMPLE_RATE,
                        blocksize=BLOCK_FRAMES,
                        channels=channels,
                        dtype="float32",
                        latency="low",
                        callback=self._output_callback,
                        finished_callback=self._finished(direction),
                    )
            except sd.PortAudioError:
                if channels == attempts[-1]:
                    raise
                continue
            streams.opened()
            return stream
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def _input_callback(
        self, indata: npt.NDArray[np.int16], frames: int, _time: Any, status: sd.CallbackFlags
    ) -> None:
        if self._last_input is None:
            self.realtime[Direction.INPUT] = _make_realtime()
        self._last_input = self._clock()
        if status:
            self.glitches += 1
        block = np.ascontiguousarray(indata[:, 0])
        self._call(lambda handler: handler.on_input(block))

    def _output_callback(
        self, outdata: npt.NDArray[np.float32], frames: int, _time: Any, status: sd.CallbackFlags
    ) -> None:
        if self._last_output is None:
            self.realtime[Direction.OUTPUT] = _make_realtime()
        self._last_output = self._clock()
        if status:
            self.glitches += 1
        if len(self._mono_out) != frames:
            self._mono_out = np.zeros(frames, dtype=np.float32)
        self._mono_out.fill(0.0)
        if not self._call(lambda handler: handler.on_output(self._mono_out)):
            self._mono_out.fill(0.0)
        outdata[:] = self._mono_out[:, np.newaxis]

    def _call(self, use: Callable[[CardHandler], None]) -> bool:
        handler = self._handler
        if handler is None:
            return False
        try:
            use(handler)
        except Exception as exc:
            # A bug in our own audio code: stop this stream loudly rather than play garbage.
            handler.on_error(f"the audio code failed: {type(exc).__name__}: {exc}")
            raise sd.CallbackAbort from exc
        return True

    def _finished(self, direction: Direction) -> Callable[[], None]:
        def finished() -> None:
            handler = self._handler
            if not self._stopping.is_set() and handler is not None:
                handler.on_error(
                    f"the {direction.noun} ({self._card(direction).name}) stopped: "
                    "the sound card was unplugged or failed"
                )

        return finished


def _make_realtime() -> bool:
    """Real-time scheduling for the calling thread (PortAudio's, for its stream's life), where the
    system grants it: root, or a service with ``LimitRTPRIO``; otherwise it stays as it was."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except OSError:
        return False
    return True


@contextmanager
def _pipewire_stream(*, node: str | None, props: str | None) -> Iterator[None]:
    """Give the stream created inside these properties, unless the operator set their own, and
    link it to ``node`` (PipeWire's ALSA plugin reads both when it creates the stream)."""
    saved = {key: os.environ.get(key) for key in ("PIPEWIRE_NODE", "PIPEWIRE_PROPS")}
    if node is not None:
        os.environ["PIPEWIRE_NODE"] = node  # the canceller's node, whatever the operator set
    if props is not None and saved["PIPEWIRE_PROPS"] is None:
        os.environ["PIPEWIRE_PROPS"] = props
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
