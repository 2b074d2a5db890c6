"""The box's MIDI across the link: this room's instruments to the other side, and the other
side's notes to this room's instrument.

    bridge = MidiBridge(settings.midi, send=links.send_midi, synth=make_synth)
    bridge.start()                          # on the event loop
    links = LinkManager(..., on_midi=bridge.received, on_link_ended=bridge.link_ended)
    ...
    await bridge.aclose()

Sending: each message from an input port is stamped with this box's monotonic clock as it
arrives (on rtmidi's thread), and everything that reached the loop in the same turn goes as one
batch (``wire.batches``), so a chord costs one data-channel message. What cannot be sent (no live
link) is dropped, never kept: a note played into a dead link would sound late and out of
rhythm when it came back. At most ``MAX_UNSENT`` messages wait for the next turn.

Receiving: batches go through ``Playout`` (the sender's rhythm, a steady delay later) and then
to the instrument: the output ports when the settings name any, else the built-in synth the
``synth`` factory makes, else nowhere (said once in the log). ``SoundingNotes`` sees every
message played, so that ``link_ended`` (the link went down, or was closed or replaced) can
release whatever still sounds: no stuck notes when the note-offs are lost with the link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import mido
import structlog

from device.midi import wire
from device.midi.errors import MidiError
from device.midi.instrument import Instrument
from device.midi.playout import Playout
from device.midi.ports import POLL_SECONDS, Backend, MidiPorts, PortsState
from device.midi.sounding import SoundingNotes
from device.settings import MidiSettings
from session_server.protocol import MAX_MIDI_EVENTS, MidiEvents

log = structlog.get_logger("twm.midi")

# Messages waiting for the loop's next turn: a few batches' worth. More in one turn is an
# instrument gone wild (or a flood); the excess is dropped and counted.
MAX_UNSENT = 4 * MAX_MIDI_EVENTS


class MidiBridge:
    """This room's instruments to the link and the link's notes to this room; on the loop only.

    ``send`` puts one batch on the link (False when it could not); ``synth`` makes the built-in
    synth, used only when the settings name no output port.
    """

    def __init__(
        self,
        settings: MidiSettings,
        *,
        send: Callable[[MidiEvents], bool],
        synth: Callable[[], Instrument] | None = None,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._settings = settings
        self._send = send
        self._synth_factory = synth
        self._poll_seconds = poll_seconds
        self._ports: MidiPorts | None = None
        self._instrument: Instrument | None = None
        self._playout = Playout(delay_ms=settings.playout_ms)
        self._sounding = SoundingNotes()
        self._unsent: list[wire.Timed] = []
        self._flush_scheduled = False
        self._player: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0  # messages put on the link
        self.unsent_dropped = 0  # messages dropped: no live link, or too many in one turn
        self.played = 0  # messages from the other side played on the instrument

    @property
    def instrument(self) -> Instrument | None:
        return self._instrument

    @property
    def ports(self) -> MidiPorts | None:
        return self._ports

    @property
    def sounding(self) -> frozenset[tuple[int, int]]:
        """``(channel, note)`` of the other side's notes sounding here now."""
        return self._sounding.notes

    def start(self) -> None:
        """Open the ports and the instrument and start playing; on the event loop."""
        midi = self._settings
        if midi.inputs or midi.outputs:
            try:
                self._ports = self._open_ports()
            except MidiError as exc:
                # MIDI is an extra: a box without it still holds its session.
                log.error("MIDI is off: the ports cannot be opened", error=str(exc))
        if midi.outputs:
            self._instrument = self._ports
        elif self._synth_factory is None:
            log.info("no MIDI output and no built-in synth: the other side's notes are not played")
        # Otherwise the built-in synth is made when the other side first plays (_play): its
        # SoundFont takes ~150 MB, which a box whose partner never plays should not hold.
        self._player = asyncio.get_running_loop().create_task(
            self._playout.run(self._play), name="twm-midi-playout"
        )

    def _start_synth(self) -> Instrument | None:
        factory, self._synth_factory = self._synth_factory, None  # tried once
        if factory is None:
            return None
        try:
            return factory()
        except Exception as exc:
            log.error("the built-in synth did not start", error=str(exc))
            return None

    def _open_ports(self) -> MidiPorts:
        midi = self._settings
        ports = MidiPorts(
            Backend(midi.backend),
            inputs=midi.inputs,
            outputs=midi.outputs,
            on_message=self.played_here,
            on_change=_log_ports,
            poll_seconds=self._poll_seconds,
            avoid_inputs=[midi.pad.port] if midi.pad.port else [],
        )
        ports.start()
        return ports

    # --- this room's instruments → the link ----------------------------------------------------

    def played_here(self, message: mido.Message, t_ms: float) -> None:
        """A message from one of this room's instruments, played at ``t_ms`` (``wire.now_ms``),
        on the loop."""
        if self._closed:
            return
        if len(self._unsent) >= MAX_UNSENT:
            self.unsent_dropped += 1
            return
        self._unsent.append(wire.Timed(t_ms, message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # The next turn of the loop: whatever else arrived in this one joins the batch.
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        unsent, self._unsent = self._unsent, []
        for batch in wire.batches(unsent):
            if self._send(batch):
                self.sent += len(batch.events)
            else:
                self.unsent_dropped += len(batch.events)

    # --- the link → this room's instrument -----------------------------------------------------

    def received(self, played: list[wire.Timed]) -> None:
        """Messages from the other side (on the loop), in the order they were played."""
        if self._closed:
            return
        for timed in played:
            self._playout.receive(timed.t_ms, timed.message)

    def _play(self, message: mido.Message) -> None:
        instrument = self._instrument
        if instrument is None:
            instrument = self._instrument = self._start_synth()
        if instrument is None:
            return
        self._sounding.observe(message)
        instrument.send(message)
        self.played += 1

    def link_ended(self) -> None:
        """The link the notes came on is gone: silence what sounds, forget what waits."""
        if self.sent or self.played:
            # Since the box started: what a technician needs to tell a lost note's cause.
            playout = self._playout
            log.info(
                "midi so far",
                sent=self.sent,
                not_sent=self.unsent_dropped,
                played=self.played,
                dropped_late=playout.dropped_late,
                played_late=playout.played_late,
            )
        self._playout.reset()
        self._unsent.clear()
        released = self._sounding.release()
        instrument = self._instrument
        if instrument is not None and released:
            log.info("released the other side's notes", notes=len(released))
            for message in released:
                instrument.send(message)

    async def aclose(self) -> None:
        """Silence everything, stop playing and close the ports."""
        if self._closed:
            return
        self.link_ended()
        self._closed = True
        if self._player is not None:
            self._player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._player
        if self._ports is not None:
            await self._ports.aclose()  # writes the releases queued before it, then closes


def _log_ports(state: PortsState) -> None:
    log.info("midi ports", inputs=list(state.inputs), outputs=list(state.outputs))
