"""The MIDI instruments and synths the settings name, opened and kept open as they come and go.

    ports = MidiPorts(
        Backend.ALSA, inputs=["Launchkey"], outputs=["Roland"],
        on_message=bridge.played_here,             # (message, t_ms), on the event loop
        on_change=lambda state: log.info("midi", inputs=state.inputs),
    )
    ports.start()                                  # on the event loop
    ports.send(message)                            # from the loop; never blocks
    await ports.aclose()

A name in the settings is a case-insensitive part of a port's name, as for sound cards
(``device.audio.cards``): an exact name wins over a partial one, and among partial matches the
first listed. USB instruments get numbered names (``Launchkey Mini:Launchkey Mini MIDI 1 24:0``)
that change when replugged, so ports are matched again each time they are looked for.

Everything that touches rtmidi runs on one worker thread: listing, opening, closing and writing.
A USB port that is pulled out can make a write fail or (on some drivers) take its time, and none
of that may hold up the event loop, which also runs the audio link and the buttons. The loop only
puts messages on a bounded queue; a port that raises is closed and looked for again at the next
scan. Ports are listed every ``poll_seconds`` (an instrument plugged in is played within about
that long); a port that is no longer listed is closed. An input's messages arrive on rtmidi's own
thread (made whole by ``InputPort``: running status and clock bytes inside a note lose nothing),
are stamped there (``wire.now_ms``: the loop may be busy with audio for a few ms, and a
stamp taken there would move the note off its beat) and are handed to the loop with
``call_soon_threadsafe``.

Never chosen: ports of rtmidi's own clients (``RtMidiIn Client``, ``RtMidiOut Client``: the ports
this process, or another box on the same machine, opened), and, by a partial name, ALSA's
``Midi Through`` (which echoes whatever it is sent back into its input: a loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import mido
import rtmidi  # type: ignore[import-untyped]  # python-rtmidi ships no type information
import structlog

from device.midi.errors import MidiPortError
from device.midi.input_port import InputPort
from device.midi.wire import now_ms, travels

log = structlog.get_logger("twm.midi")

POLL_SECONDS = 1.0
# Messages waiting for the worker: more than a player can make in the time a write may hang.
# Beyond it new ones are dropped (counted), because the loop must never wait for a port.
MAX_QUEUED = 1_024
_OWN_CLIENTS = ("rtmidiin client", "rtmidiout client")
_THROUGH = "midi through"


class Backend(StrEnum):
    """rtmidi's MIDI system: ALSA's sequencer on a box, JACK where there is none (the tests)."""

    ALSA = "alsa"
    JACK = "jack"

    @property
    def mido_name(self) -> str:
        return f"mido.backends.rtmidi/{self.rtmidi_api_name}"

    @property
    def rtmidi_api_name(self) -> str:
        return "LINUX_ALSA" if self is Backend.ALSA else "UNIX_JACK"

    @property
    def rtmidi_api(self) -> int:
        api: int = getattr(rtmidi, f"API_{self.rtmidi_api_name}")
        return api


def choose(pattern: str, names: Sequence[str]) -> str | None:
    """The port ``pattern`` means among ``names``, or None when none matches."""
    key = pattern.strip().casefold()
    if not key:
        return None
    candidates = [name for name in names if not name.casefold().startswith(_OWN_CLIENTS)]
    exact = [name for name in candidates if name.casefold() == key]
    if exact:
        return exact[0]
    partial = [
        name for name in candidates if key in name.casefold() and _THROUGH not in name.casefold()
    ]
    return partial[0] if partial else None


@dataclass(frozen=True)
class PortsState:
    """The ports open now, by name."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


class _Stop:
    pass


class _Scan:
    pass


_STOP = _Stop()
_SCAN = _Scan()


class MidiPorts:
    """Keeps the inputs and outputs named by ``inputs`` / ``outputs`` (name patterns) open.

    ``on_message(message, t_ms)`` gets each message from an input for which ``accept`` is true
    with the moment it arrived (``wire.now_ms``) (by default the
    channel-voice messages that can cross the link: a MIDI clock would wake the loop 48 times a
    second for nothing); ``on_change`` gets the new ``PortsState`` whenever a port opened or
    closed. Both are called on the event loop ``start`` was called on.

    ``avoid_inputs`` (name patterns) keeps inputs out that another part of the box owns: the
    MIDI pad's, whose notes are the buttons and must not also be played across.

    Raises ``MidiPortError`` at once when rtmidi lacks ``backend``; a port that is missing,
    will not open or fails later is only logged and looked for again.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        on_message: Callable[[mido.Message, float], None],
        on_change: Callable[[PortsState], None] | None = None,
        accept: Callable[[mido.Message], bool] = travels,
        poll_seconds: float = POLL_SECONDS,
        avoid_inputs: Sequence[str] = (),
    ) -> None:
        self.backend = backend
        self._mido = mido_backend(backend)
        self._input_patterns = tuple(inputs)
        self._output_patterns = tuple(outputs)
        self._avoid_patterns = tuple(avoid_inputs)
        self._on_message = on_message
        self._on_change = on_change
        self._accept = accept
        self._poll_seconds = poll_seconds
        self._work: queue.Queue[mido.Message | _Stop | _Scan] = queue.Queue(MAX_QUEUED)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Owned by the worker thread; pattern → open port.
        self._inputs: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}
        self._listers: tuple[Any, Any] | None = None
        self._listing_failed = False
        self._state = PortsState((), ())
        self.dropped = 0  # messages the queue had no room for

    @property
    def state(self) -> PortsState:
        """The ports open now (as of the last scan or failure)."""
        return self._state

    @property
    def queued(self) -> int:
        """Messages waiting for the worker to write them."""
        return self._work.qsize()

    @property
    def running(self) -> bool:
        """Whether the worker is looking after the ports (false before start, after close)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start looking for the ports; call on the event loop that gets the callbacks."""
        if self._thread is not None:
            raise RuntimeError("MidiPorts already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="midi-ports", daemon=True)
        self._thread.start()

    def send(self, message: mido.Message) -> None:
        """Play ``message`` on every open output, soon; from any thread, never blocking."""
        self._put(message)

    def rescan(self) -> None:
        """Look for ports now rather than at the next poll (e.g. after a USB hotplug event)."""
        self._put(_SCAN)

    def close(self, timeout: float = 5.0) -> None:
        """Close every port and end the worker (blocks up to ``timeout``: see ``aclose``)."""
        thread = self._thread
        if thread is None:
            return
        while True:  # the stop must get in even if the queue is full
            try:
                self._work.put_nowait(_STOP)
                break
            except queue.Full:
                self._drain_one()
        thread.join(timeout)
        if thread.is_alive():
            # A port hangs in the driver; the thread is a daemon and dies with the process.
            log.warning("a MIDI port did not close in time", seconds=timeout)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # --- any thread ----------------------------------------------------------------------------

    def _put(self, item: mido.Message | _Scan) -> None:
        try:
            self._work.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _drain_one(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._work.get_nowait()

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the loop has closed, the box is shutting down.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    def _received(self, message: mido.Message) -> None:
        # On rtmidi's thread.
        if self._accept(message):
            self._to_loop(self._on_message, message, now_ms())

    # --- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_scan = 0.0
        try:
            while True:
                try:
                    item = self._work.get(timeout=max(0.0, next_scan - time.monotonic()))
                except queue.Empty:
                    item = None
                if isinstance(item, _Stop):
                    return
                if isinstance(item, _Scan):
                    next_scan = 0.0
                elif item is not None:
                    self._write(item)
                if time.monotonic() >= next_scan:
                    self._scan()
                    next_scan = time.monotonic() + self._poll_seconds
        except Exception:
            log.exception("the MIDI worker failed; MIDI stops, the session goes on")
        finally:
            for ports in (self._inputs, self._outputs):
                for pattern in list(ports):
                    self._close(ports, pattern)
            self._listers = None
            self._publish()

    def _write(self, message: mido.Message) -> None:
        for pattern, port in list(self._outputs.items()):
            try:
                port.send(message)
            except Exception as exc:
                log.warning("a MIDI output failed; closing it", port=port.name, error=str(exc))
                self._close(self._outputs, pattern)
                self._publish()

    def _scan(self) -> None:
        try:
            input_names, output_names = self._list()
        except Exception as exc:
            if not self._listing_failed:
                log.warning("cannot list the MIDI ports", backend=self.backend, error=str(exc))
            self._listing_failed = True
            self._listers = None  # a new client next time: the MIDI system may have restarted
            return
        self._listing_failed = False
        avoided = {choose(pattern, input_names) for pattern in self._avoid_patterns}
        input_names = [name for name in input_names if name not in avoided]
        changed = self._follow(self._inputs, self._input_patterns, input_names, self._open_input)
        changed |= self._follow(
            self._outputs, self._output_patterns, output_names, self._open_output
        )
        if changed:
            self._publish()

    def _list(self) -> tuple[list[str], list[str]]:
        # One listing client per direction, kept: making one per look costs a JACK or ALSA
        # client each time.
        if self._listers is None:
            api = self.backend.rtmidi_api
            self._listers = (rtmidi.MidiIn(rtapi=api), rtmidi.MidiOut(rtapi=api))
        midi_in, midi_out = self._listers
        return list(midi_in.get_ports()), list(midi_out.get_ports())

    def _follow(
        self,
        ports: dict[str, Any],
        patterns: Sequence[str],
        names: Sequence[str],
        opener: Callable[[str], Any],
    ) -> bool:
        changed = False
        for pattern in patterns:
            port = ports.get(pattern)
            if port is not None and port.name not in names:
                log.info("a MIDI port went away", port=port.name)
                self._close(ports, pattern)
                changed = True
            if pattern in ports:
                continue
            wanted = choose(pattern, names)
            taken = {open_port.name for open_port in ports.values()}
            if wanted is None or wanted in taken:
                continue
            try:
                ports[pattern] = opener(wanted)
            except Exception as exc:
                log.warning("cannot open a MIDI port; trying again", port=wanted, error=str(exc))
                continue
            log.info("opened a MIDI port", port=wanted, pattern=pattern)
            changed = True
        return changed

    def _open_input(self, name: str) -> Any:
        return InputPort(self.backend.rtmidi_api, name, self._received)

    def _open_output(self, name: str) -> Any:
        return self._mido.open_output(name)

    def _close(self, ports: dict[str, Any], pattern: str) -> None:
        port = ports.pop(pattern)
        try:
            port.close()
        except Exception as exc:
            log.warning("closing a MIDI port failed", port=port.name, error=str(exc))

    def _publish(self) -> None:
        state = PortsState(
            inputs=tuple(port.name for port in self._inputs.values()),
            outputs=tuple(port.name for port in self._outputs.values()),
        )
        if state == self._state:
            return
        self._state = state
        if self._on_change is not None:
            self._to_loop(self._on_change, state)


def port_names(backend: Backend) -> tuple[list[str], list[str]]:
    """The input and output ports there are now, by name (``MidiPortError`` when the MIDI
    system cannot be listed: no ALSA sequencer, no JACK server)."""
    mido_backend(backend)  # says plainly when rtmidi lacks the backend
    try:
        midi_in = rtmidi.MidiIn(rtapi=backend.rtmidi_api)
        midi_out = rtmidi.MidiOut(rtapi=backend.rtmidi_api)
        try:
            return list(midi_in.get_ports()), list(midi_out.get_ports())
        finally:
            midi_in.delete()
            midi_out.delete()
    except rtmidi.RtMidiError as exc:
        raise MidiPortError(f"cannot list the {backend.value} MIDI ports: {exc}") from None


def mido_backend(backend: Backend) -> Any:
    """mido's rtmidi backend for ``backend``, or ``MidiPortError`` when it cannot be had."""
    try:
        chosen = mido.Backend(backend.mido_name, load=True)
        available = chosen.module.get_api_names()
    except (ImportError, ValueError) as exc:
        raise MidiPortError(f"cannot load mido's rtmidi backend: {exc}") from None
    if backend.rtmidi_api_name not in available:
        raise MidiPortError(
            f"rtmidi here has no {backend.value} support (it has: {', '.join(available)}); "
            "set midi.backend (TWM_DEVICE_MIDI__BACKEND)"
        )
    return chosen
