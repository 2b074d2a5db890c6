"""The box's audio, as the agent uses it: microphone tracks out, the remote track in, cues,
volume and mute, and a sound card that may vanish and come back.

    engine = AudioEngine(settings.audio, sounddevice_card, on_failed=..., on_restored=...)
    await engine.start()                  # never raises for a missing card: on_failed instead
    pc.addTrack(engine.new_microphone_track())
    engine.play_remote(track, receiver)   # from the peer connection's "track" event
    engine.set_sending(True)              # on air: the microphone is sent
    engine.play_cue(Cue.CONNECTED)
    synth = engine.midi_synth()           # the built-in GM synth, on the speaker (an Instrument)
    synth.send(mido.Message("note_on", note=69, velocity=80))
    ...
    await engine.stop_remote()
    await engine.close()

Two receive paths, by ``audio.profile``:

- "music": the track's ``RTCRtpReceiver`` is tapped (``device.net.rtp_tap``) and its packets go
  undecoded into our ``JitterBuffer`` (``device.audio.jitter``), which the card's output callback
  pulls: decoding, loss concealment and the delay are all clocked by the card. The microphone
  tracks send 10 ms Opus packets (``Microphone(music=True)``).
- "stock": aiortc as shipped, decoding into the ``PlayoutBuffer`` through ``Speaker``; the
  benchmark's baseline, and the fallback when the music path cannot be had (aiortc's receiver
  not as pinned, libopus missing: logged) or a track has no receiver (a test tone).

The card's callbacks run on PortAudio's threads. They touch only thread-safe parts (the
playout and jitter buffers, the mixer, the level meters) and hand everything else to the event
loop with ``loop.call_soon_threadsafe``; ``on_failed`` and ``on_restored`` always run on the loop.

A failure (the card missing at start, a stream that ends by itself, callbacks that stop, a
callback that raises) calls ``on_failed(message)`` once. From then on the engine tries to open
the card again every ``retry_seconds``; a card counts as back only once both directions are
delivering again, and then ``on_restored()`` is called. Microphone tracks and the remote track
stay attached through all of this and carry on when the card returns.

The built-in MIDI synth (``device.midi.synth.FluidSynth``) plays the other side's instruments
when the box has no MIDI output port. ``midi_synth`` makes it on first use (it takes 148 MB and
seconds to load on a Pi, and most homes never need it) and hands it to the mixer, which sums it
into the speaker at the call's volume; it stays through card failures like the mixer does. The
bound method is a ``Callable[[], Instrument]``: the synth factory the MIDI bridge takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import structlog
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamTrack

from device.audio.cues import cue_sound
from device.audio.jitter import JitterBuffer, JitterStats, OpusCodec
from device.audio.meter import LevelMeter
from device.audio.microphone import Microphone
from device.audio.mixer import Mixer
from device.audio.playout import PlayoutBuffer, PlayoutStats
from device.audio.soundcard import CardFactory, SoundCard
from device.audio.speaker import Speaker, TappedSpeaker
from device.errors import AudioError
from device.lifecycle.machine import DEFAULT_VOLUME
from device.lifecycle.states import Cue
from device.midi.synth import FluidSynth
from device.settings import AudioSettings

RETRY_SECONDS = 2.0
CHECK_SECONDS = 0.25
HEALTHY_CHECKS = 8  # supervisor steps that may be missed before the engine counts as stuck

log = structlog.get_logger("twm.audio")


@dataclass(frozen=True)
class Levels:
    """RMS levels over the last ~300 ms; None while the card is not running."""

    input_dbfs: float | None
    output_dbfs: float | None


@dataclass(frozen=True)
class CardsDescription:
    """Which cards the settings ask for, which are in use, and what is wrong, for ``status``."""

    wanted_input: str
    wanted_output: str
    input: str | None  # the card in use; None while there is none
    output: str | None
    running: bool  # both directions are delivering
    problem: str | None  # the failure the engine is recovering from
    receive_path: Literal["music", "stock"]  # which buffer plays the remote audio now
    playout: PlayoutStats  # the stock path's buffer
    jitter: JitterStats | None  # the music path's buffer, once a music track has played


class AudioEngine:
    def __init__(
        self,
        settings: AudioSettings,
        card_factory: CardFactory,
        on_failed: Callable[[str], None],
        on_restored: Callable[[], None],
        *,
        retry_seconds: float = RETRY_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._settings = settings
        self._card_factory = card_factory
        self._on_failed = on_failed
        self._on_restored = on_restored
        self._retry_seconds = retry_seconds
        self._check_seconds = check_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._card: SoundCard | None = None
        self._generation = 0  # callbacks from an earlier opening of the card are ignored
        self._problem: str | None = None  # set while failing
        self._next_attempt = 0.0
        self._supervisor: asyncio.Task[None] | None = None
        self._supervised_at = 0.0  # loop time of the supervisor's last step
        self._sending = False
        self._tracks: weakref.WeakSet[Microphone] = weakref.WeakSet()
        self._playout = PlayoutBuffer()
        self._speaker = Speaker(self._playout)
        self._jitter: JitterBuffer | None = None  # made for the first music track
        self._tapped: TappedSpeaker | None = None
        # What the card's output callback pulls: swapped on the loop, read on the card's thread
        # (one reference, so the read is atomic).
        self._source: PlayoutBuffer | JitterBuffer = self._playout
        self._mixer = Mixer(DEFAULT_VOLUME)
        self._synth: FluidSynth | None = None  # made by midi_synth()
        self._input_meter = LevelMeter()
        self._output_meter = LevelMeter()

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the card, or report why not (``on_failed``) and keep trying in the background."""
        if self._supervisor is not None:
            raise RuntimeError("the audio engine is already started")
        self._loop = asyncio.get_running_loop()
        self._supervised_at = self._loop.time()
        self._open()
        self._supervisor = self._loop.create_task(self._supervise(), name="twm-audio-supervisor")

    async def close(self) -> None:
        """Stop everything: the supervisor, the remote track, the microphone tracks, the card."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self.stop_remote()
        for track in list(self._tracks):
            track.stop()
        self.detach_synth()
        self._release_card()

    # --- what the agent calls -----------------------------------------------------------

    def new_microphone_track(self) -> Microphone:
        """A fresh track for a new peer connection (stop it when the connection closes)."""
        track = Microphone(
            sending=self._sending,
            on_stop=self._tracks.discard,
            music=self._settings.profile == "music",
        )
        self._tracks.add(track)
        return track

    def play_remote(self, track: MediaStreamTrack, receiver: RTCRtpReceiver | None = None) -> None:
        """Play the other side's audio track, instead of any played before.

        ``receiver``: the track's ``RTCRtpReceiver``, which the music path needs; without one
        (a track not from a peer connection) the track plays the stock way."""
        if self._settings.profile == "music" and receiver is not None:
            try:
                self._music_speaker().attach(track, receiver)
            except AudioError as exc:
                log.warning("the music receive path is not available: stock", problem=str(exc))
            else:
                self._speaker.release()
                self._source = self._require_jitter()
                return
        if self._tapped is not None:
            self._tapped.release()
        self._speaker.attach(track)
        self._source = self._playout

    async def stop_remote(self) -> None:
        await self._speaker.detach()
        if self._tapped is not None:
            await self._tapped.detach()

    def set_sending(self, sending: bool) -> None:
        """Whether the microphone is sent (on air) or digital silence is (muted, off air)."""
        self._sending = sending
        for track in list(self._tracks):
            track.set_sending(sending)

    @property
    def sending(self) -> bool:
        return self._sending

    def set_volume(self, level: int) -> None:
        self._mixer.set_volume(level)

    def play_cue(self, cue: Cue) -> None:
        self._mixer.play(cue_sound(cue))

    def midi_synth(self) -> FluidSynth:
        """The built-in General MIDI synth, summed into the speaker output at the call's volume.

        Made and attached on the first call, the same one after that; a fresh one if the last
        failed on the speaker (the mixer detached it, and logged why). Raises ``MidiError``
        saying what to install when FluidSynth or its SoundFont is missing. On the event loop:
        it returns at once and loads the SoundFont in the background (``FluidSynth.loaded``)."""
        synth = self._synth
        if synth is not None and self._mixer.source is synth:
            return synth
        if synth is not None:
            synth.close()  # failed and already detached
            self._synth = None
        synth = FluidSynth()
        self._synth = synth
        self._mixer.attach(synth)
        return synth

    def detach_synth(self) -> None:
        """Take the built-in synth off the speaker and free it (``close`` does this too)."""
        synth, self._synth = self._synth, None
        if synth is not None:
            self._mixer.detach(synth)
            synth.close()

    def levels(self) -> Levels:
        if not self._running():
            return Levels(None, None)
        return Levels(self._input_meter.dbfs(), self._output_meter.dbfs())

    def cards_description(self) -> CardsDescription:
        card = self._card
        return CardsDescription(
            wanted_input=self._settings.input,
            wanted_output=self._settings.output,
            input=card.input_name if card is not None else None,
            output=card.output_name if card is not None else None,
            running=self._running(),
            problem=self._problem,
            receive_path="music" if self._source is self._jitter else "stock",
            playout=self._playout.stats(),
            jitter=self._jitter.stats() if self._jitter is not None else None,
        )

    # --- the music path -------------------------------------------------------------------

    def _music_speaker(self) -> TappedSpeaker:
        """The music path's speaker and buffer, made once (AudioError: no libopus)."""
        if self._tapped is None:
            self._jitter = JitterBuffer(OpusCodec)
            self._tapped = TappedSpeaker(self._jitter)
        return self._tapped

    def _require_jitter(self) -> JitterBuffer:
        if self._jitter is None:
            raise RuntimeError("the music path has no buffer yet")
        return self._jitter

    # --- the card -----------------------------------------------------------------------

    def _running(self) -> bool:
        return self._card is not None and self._problem is None and self._card.flowing()

    def _open(self) -> None:
        loop = self._require_loop()
        self._generation += 1
        try:
            card = self._card_factory(self._settings)
            card.start(_Handler(self, self._generation, loop))
        except AudioError as exc:
            self._fail(str(exc))
            return
        self._card = card
        log.info("audio card opened", input=card.input_name, output=card.output_name)

    def _release_card(self) -> None:
        card, self._card = self._card, None
        self._generation += 1
        if card is not None:
            card.stop()
        self._input_meter.reset()
        self._output_meter.reset()

    def _fail(self, message: str) -> None:
        """On the loop: the card failed (or could not be opened)."""
        self._release_card()
        self._next_attempt = self._require_loop().time() + self._retry_seconds
        if self._problem is not None:
            return  # still the same failure: it was reported when it began
        self._problem = message
        log.warning("audio card failed", problem=message)
        self._on_failed(message)

    def _card_failed(self, generation: int, message: str) -> None:
        if generation == self._generation and self._card is not None:
            self._fail(message)

    @property
    def healthy(self) -> bool:
        """The engine is watching its card: the supervisor ran a step within a few intervals.

        A missing or failed card is *not* unhealthy (the engine is handling it, and the box says
        so); a supervisor that stopped or stalls is: that is for systemd's watchdog to act on."""
        if self._supervisor is None or self._supervisor.done() or self._loop is None:
            return False
        return self._loop.time() - self._supervised_at <= HEALTHY_CHECKS * self._check_seconds

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            self._supervised_at = self._require_loop().time()
            try:
                self._supervise_once()
            except Exception:
                # The agent's callbacks raising must not end the watch over the card.
                log.exception("audio supervisor step failed")

    def _supervise_once(self) -> None:
        card = self._card
        if card is not None:
            problem = card.check()
            if problem is not None:
                self._fail(problem)
            elif self._problem is not None and card.flowing():
                self._problem = None
                log.info("audio card restored", input=card.input_name, output=card.output_name)
                self._on_restored()
        elif self._problem is not None and self._require_loop().time() >= self._next_attempt:
            self._open()

    def _deliver_input(self, generation: int, block: npt.NDArray[np.int16]) -> None:
        if generation != self._generation:
            return
        for track in list(self._tracks):
            track.feed(block)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the audio engine is not started")
        return self._loop

    # --- for the handler, on audio threads ------------------------------------------------

    def _render(self, out: npt.NDArray[np.float32]) -> None:
        self._mixer.render(self._source.pull(len(out)), out)
        self._output_meter.add(out)

    def _capture(self, block: npt.NDArray[np.int16]) -> None:
        self._input_meter.add(block)


class _Handler:
    """The engine as one opening of the card sees it; runs on the card's threads."""

    def __init__(self, engine: AudioEngine, generation: int, loop: asyncio.AbstractEventLoop):
        self._engine = engine
        self._generation = generation
        self._loop = loop

    def on_input(self, block: npt.NDArray[np.int16]) -> None:
        self._engine._capture(block)
        # The card reuses its buffer after the callback returns: the loop gets a copy.
        self._hand_over(self._engine._deliver_input, self._generation, block.copy())

    def on_output(self, out: npt.NDArray[np.float32]) -> None:
        self._engine._render(out)

    def on_error(self, message: str) -> None:
        self._hand_over(self._engine._card_failed, self._generation, message)

    def _hand_over(self, callback: Callable[..., None], *args: object) -> None:
        # A closed loop raises RuntimeError: the box is shutting down and nobody is listening.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)
