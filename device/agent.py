"""The running box: feeds the lifecycle machine its events and carries out its actions.

Every input (buttons, the server, the link, the sound card, the clock) arrives as an event on one
queue, on the event loop; the machine turns each into actions, carried out here in order. The
machine is the only place that decides anything.

    agent = Agent(settings, card_factory=sounddevice_card, pin_factory=pin_factory(settings.pins))
    await agent.run()

MIDI rides along without the machine: the bridge (``device.midi.bridge``) hears from the link
manager when a link ends, which is exactly when the machine's link actions or a lost link end one,
so the machine need not know about notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiortc import MediaStreamTrack, RTCRtpReceiver
from gpiozero import Factory

from device import status
from device.audio.engine import AudioEngine, CardsDescription
from device.audio.format import SAMPLE_RATE
from device.audio.playout import TARGET_MS as PLAYOUT_TARGET_MS
from device.audio.soundcard import CardFactory
from device.controls.buttons import Buttons
from device.controls.keyboard import Keyboard
from device.controls.lights import Lights
from device.controls.pad import Pad
from device.lifecycle import actions as act
from device.lifecycle import events as ev
from device.lifecycle.machine import Machine
from device.lifecycle.states import State
from device.midi.bridge import MidiBridge
from device.midi.errors import MidiError
from device.midi.instrument import Instrument
from device.midi.ports import Backend
from device.midi.wire import Timed
from device.net.links import LinkManager
from device.net.sdp import tune_for_music
from device.net.signalling import SignallingClient
from device.notify import Notifier
from device.settings import DeviceSettings
from session_server.clock import SystemClock

log = structlog.get_logger("twm.agent")

TICK_SECONDS = 1.0
# The box's state in words, for systemd's STATUS= (`systemctl status twm-device`).
STATE_WORDS: dict[State, str] = {
    State.OFFLINE: "offline: cannot reach the session server",
    State.IDLE: "ready: no session now",
    State.SESSION_SOON: "a session is open: waiting for START",
    State.WAITING: "in the session: waiting for the other side",
    State.CONNECTING: "connecting to the other side",
    State.LIVE: "live: sound both ways",
    State.RECONNECTING: "the link dropped: reconnecting",
    State.ENDED: "the session ended",
    State.FAULT: "fault: see twm-device status",
}
STATUS_SECONDS = 2.0


@dataclass
class _Parts:
    audio: AudioEngine
    lights: Lights
    signalling: SignallingClient
    links: LinkManager
    buttons: Buttons
    midi: MidiBridge
    keyboard: Keyboard | None = None
    pad: Pad | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Agent:
    def __init__(
        self,
        settings: DeviceSettings,
        *,
        card_factory: CardFactory,
        pin_factory: Factory,
        keyboard_fd: int | None = None,
        on_action: Callable[[act.Action], None] | None = None,
        notifier: Notifier | None = None,
        midi_synth: Callable[[], Instrument] | None = None,
    ) -> None:
        self._settings = settings
        self._card_factory = card_factory
        self._pin_factory = pin_factory
        self._keyboard_fd = keyboard_fd
        self._on_action = on_action  # a window for tests and the demo; never changes behaviour
        self._notifier = notifier if notifier is not None else Notifier.from_environment()
        self._midi_synth = midi_synth  # the built-in synth, for a box with no MIDI output port
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._machine: Machine | None = None
        self._parts: _Parts | None = None
        self._errors: list[status.LoggedError] = []
        self._stopping = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._machine is not None

    @property
    def machine(self) -> Machine:
        if self._machine is None:
            raise RuntimeError("the agent is not running")
        return self._machine

    def post(self, event: ev.Event) -> None:
        """Queue an event. Call on the loop; other threads use loop.call_soon_threadsafe."""
        self._events.put_nowait(event)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run until ``stop()`` or cancellation; always releases pins, card and connections."""
        token = self._settings.read_token()
        loop = asyncio.get_running_loop()
        lights = Lights(self._settings.pins, self._pin_factory)
        audio = AudioEngine(
            self._settings.audio,
            self._card_factory,
            on_failed=lambda message: self.post(ev.AudioFailed(message)),
            on_restored=lambda: self.post(ev.AudioRestored()),
        )
        signalling = SignallingClient(self._settings.server_url, token, self.post, SystemClock())
        links = LinkManager(
            signalling,
            self.post,
            role=self._settings.role,
            microphone=audio.new_microphone_track,
            on_remote_audio=self._play_remote,
            settings=self._settings.link,
            tune_sdp=tune_for_music if self._settings.audio.profile == "music" else None,
            on_midi=self._midi_received,
            on_link_ended=self._midi_link_ended,
        )
        # The built-in synth plays into this box's own speaker: the engine's, unless one is given.
        synth = self._midi_synth or audio.midi_synth
        midi = MidiBridge(self._settings.midi, send=links.send_midi, synth=synth)
        try:
            buttons = Buttons(self._settings.pins, self._pin_factory, loop, self.post)
        except BaseException:
            lights.close()
            await links.aclose()
            raise
        parts = _Parts(audio, lights, signalling, links, buttons, midi)
        self._parts = parts
        try:
            if self._settings.keyboard:
                parts.keyboard = Keyboard(
                    self._settings.pins, self._pin_factory, loop, fd=self._keyboard_fd
                )
                parts.keyboard.start()
            self._machine, actions = Machine.initial(signalling.server_now())
            await self._carry_out(actions)
            await audio.start()
            midi.start()
            parts.pad = self._open_pad()
            parts.tasks = [
                asyncio.create_task(signalling.run(), name="twm-signalling"),
                asyncio.create_task(self._tick(signalling), name="twm-tick"),
                asyncio.create_task(self._write_status(), name="twm-status"),
                asyncio.create_task(self._step_forever(), name="twm-lifecycle"),
            ]
            if self._notifier.watchdog_seconds is not None:
                parts.tasks.append(
                    asyncio.create_task(
                        self._feed_watchdog(self._notifier.watchdog_seconds / 2),
                        name="twm-watchdog",
                    )
                )
            log.info("box_started", role=self._settings.role.value, pid=os.getpid())
            self._notifier.ready(STATE_WORDS[self.machine.state])
            stopping = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait(
                [*parts.tasks, stopping], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopping:
                    task.result()  # re-raise what ended a part that should run for ever
        finally:
            await self._shut_down(parts)

    def _open_pad(self) -> Pad | None:
        """The MIDI pad's buttons, when the settings name one (an extra, like MIDI: a box whose
        pad cannot be opened still runs, on its other buttons)."""
        midi = self._settings.midi
        if midi.pad.port is None:
            return None
        try:
            pad = Pad(
                midi.pad,
                Backend(midi.backend),
                hold_seconds=self._settings.pins.hold_seconds,
                on_event=self.post,
            )
        except MidiError as exc:
            log.error("the MIDI pad is off: its port cannot be opened", error=str(exc))
            return None
        pad.start()
        log.info("looking for the MIDI pad", port=midi.pad.port)
        return pad

    # --- the loop -----------------------------------------------------------------------------

    async def _step_forever(self) -> None:
        while True:
            event = await self._events.get()
            before = self.machine
            self._machine, actions = before.step(event)
            if self._machine.state is not before.state:
                self._notifier.status(STATE_WORDS[self._machine.state])
                log.info(
                    "state",
                    state=self._machine.state.value,
                    was=before.state.value,
                    because=type(event).__name__,
                )
            if isinstance(event, ev.AudioFailed | ev.JoinRefused | ev.RoomEnded):
                self._remember(event)
            await self._carry_out(actions)

    async def _feed_watchdog(self, interval: float) -> None:
        """WATCHDOG=1 every ``interval`` while the box is healthy. This runs on the event loop,
        so a blocked loop sends nothing, and neither does an audio engine that stopped watching
        its card: systemd then restarts the box (WatchdogSec in twm-device.service)."""
        assert self._parts is not None
        audio = self._parts.audio
        while True:
            if audio.healthy:
                self._notifier.watchdog()
            else:
                log.error("watchdog_withheld", reason="the audio engine stopped watching its card")
            await asyncio.sleep(interval)

    async def _tick(self, signalling: SignallingClient) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.post(ev.Tick(signalling.server_now()))

    async def _carry_out(self, actions: list[act.Action]) -> None:
        parts = self._parts
        assert parts is not None  # set before the first action
        for action in actions:
            try:
                self._perform(parts, action)
            except Exception as exc:  # one failed action must not stop the box's life
                log.exception("action_failed", action=type(action).__name__)
                self._remember_text(f"{type(action).__name__} failed: {exc}")
            if self._on_action is not None:
                self._on_action(action)

    def _perform(self, parts: _Parts, action: act.Action) -> None:
        match action:
            case act.ShowState(state=state):
                parts.lights.show(state)
            case act.FlashReaction(kind=kind):
                parts.lights.flash_reaction(kind)
            case act.SetOnAir(on=on):
                # The microphone first: the light must never claim more than is being sent.
                if on:
                    parts.audio.set_sending(True)
                    parts.lights.set_on_air(True)
                else:
                    parts.lights.set_on_air(False)
                    parts.audio.set_sending(False)
            case act.PlayCue(cue=cue):
                parts.audio.play_cue(cue)
            case act.SetVolume(level=level):
                parts.audio.set_volume(level)
            case act.Join(room=room):
                parts.signalling.join(room)
            case act.Leave(room=room):
                parts.signalling.leave(room)
            case act.OpenLink() | act.CloseLink() | act.SendReaction():
                parts.links.perform(action)

    def _midi_received(self, played: list[Timed]) -> None:
        if self._parts is not None:
            self._parts.midi.received(played)

    def _midi_link_ended(self) -> None:
        if self._parts is not None:
            self._parts.midi.link_ended()

    def _play_remote(self, track: MediaStreamTrack, receiver: RTCRtpReceiver) -> None:
        assert self._parts is not None
        self._parts.audio.play_remote(track, receiver)

    # --- status ------------------------------------------------------------------------------

    def _remember(self, event: ev.AudioFailed | ev.JoinRefused | ev.RoomEnded) -> None:
        self._remember_text(event.message)

    def _remember_text(self, message: str) -> None:
        now = self._parts.signalling.server_now() if self._parts else None
        if now is not None:
            self._errors = status.remember_error(self._errors, now, message)

    def snapshot(self) -> status.Status:
        parts = self._parts
        machine = self.machine
        assert parts is not None
        cards = parts.audio.cards_description()
        levels = parts.audio.levels()
        upcoming = [o for o in machine.schedule if o.window_closes_at > machine.now]
        return status.Status(
            pid=os.getpid(),
            updated_at=machine.now,
            state=machine.state,
            server_url=self._settings.server_url,
            server_up=machine.server_up,
            party=machine.party,
            room=machine.room.room if machine.room else None,
            on_air=machine.on_air,
            muted=machine.muted,
            volume=machine.volume,
            fault=machine.fault,
            next_session=upcoming[0] if upcoming else None,
            audio=status.AudioStatus(
                input=cards.input or f"{cards.wanted_input} (not open)",
                output=cards.output or f"{cards.wanted_output} (not open)",
                input_dbfs=levels.input_dbfs,
                output_dbfs=levels.output_dbfs,
                receive=_receive_status(cards),
            ),
            errors=self._errors,
        )

    async def _write_status(self) -> None:
        while True:
            try:
                status.write(self._settings.runtime_dir, self.snapshot())
            except OSError as exc:
                log.warning(
                    "status_not_written", path=str(self._settings.runtime_dir), error=str(exc)
                )
            await asyncio.sleep(STATUS_SECONDS)

    async def _shut_down(self, parts: _Parts) -> None:
        self._notifier.stopping()
        for task in parts.tasks:
            task.cancel()
        for task in parts.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            parts.lights.set_on_air(False)
        if parts.keyboard is not None:
            parts.keyboard.close()
        parts.buttons.close()
        if parts.pad is not None:
            await parts.pad.aclose()
        await parts.links.aclose()
        await parts.midi.aclose()  # after the link: its last notes are released, then ports shut
        await parts.signalling.close()
        await parts.audio.close()
        parts.lights.close()
        self._notifier.close()
        log.info("box_stopped")


def _receive_status(cards: CardsDescription) -> status.ReceiveStatus:
    jitter = cards.jitter
    if cards.receive_path == "music" and jitter is not None:
        return status.ReceiveStatus(
            path="music",
            delay_ms=jitter.fill_ms,
            target_ms=jitter.target_ms,
            jitter_ms=jitter.jitter_ms,
            underruns=jitter.underruns,
            late=jitter.late,
            concealed=jitter.concealed,
            dropped_ms=jitter.dropped_ms,
        )
    playout = cards.playout
    return status.ReceiveStatus(
        path="stock",
        delay_ms=round(playout.fill * 1000 / SAMPLE_RATE, 2),
        target_ms=PLAYOUT_TARGET_MS,
        underruns=playout.underruns,
        dropped_ms=round(playout.dropped * 1000 / SAMPLE_RATE, 2),
    )
