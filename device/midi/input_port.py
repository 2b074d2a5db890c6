"""One MIDI input port, opened with rtmidi itself and its bytes made whole by ``StreamParser``.

    port = InputPort(rtmidi.API_LINUX_ALSA, "Launchkey Mini:Launchkey Mini MIDI 1 24:0",
                     on_message)        # on_message(message) on rtmidi's thread (or the poller's)
    port.close()

On JACK the port is polled from a thread of its own instead of called back: python-rtmidi runs
a callback on JACK's process thread, where it waits for Python's GIL, and a busy box's wait can
outlast JACK cycles; JACK2 then hands the late reader the writer's next buffer and rtmidi reads
the first event again where the others were (seen in the tests: a note-off three times, the two
messages behind it lost). Polled, rtmidi queues the events on JACK's thread without Python; the
poll (every ``JACK_POLL_SECONDS``) is the most a stamp can be late. ALSA's sequencer calls back
on a thread of rtmidi's own and queues in the kernel meanwhile: nothing is lost there.

Why not mido's rtmidi input: it makes one message of each event's bytes (``Message.from_bytes``)
and drops the event when that fails, so an event that carries running status (several notes
after one status byte) or a clock byte inside a note loses every note in it. ALSA's sequencer
and JACK usually hand over whole messages, but not every raw-MIDI bridge and USB driver does;
the parser takes whatever comes and keeps running status from one event to the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mido
import rtmidi  # type: ignore[import-untyped]  # python-rtmidi ships no type information
import structlog

from device.midi.parser import StreamParser

log = structlog.get_logger("twm.midi")


JACK_POLL_SECONDS = 0.002


class InputPort:
    """The port named ``name`` (exactly, as rtmidi lists it) on rtmidi's ``api``; ``OSError``
    when it is not there or will not open.

    ``virtual``: a port of its own named ``name``, for others to connect to (a test's synth),
    rather than one that exists. ``poll_seconds``: how often a JACK port is polled.
    """

    def __init__(
        self,
        api: int,
        name: str,
        on_message: Callable[[mido.Message], None],
        *,
        virtual: bool = False,
        poll_seconds: float = JACK_POLL_SECONDS,
    ) -> None:
        self.name = f"{name}:{name}" if virtual else name  # a virtual one as JACK lists it
        self._on_message = on_message
        self._poll_seconds = poll_seconds
        self._parser = StreamParser()
        self._failed = False
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if virtual:
            self._rt = rtmidi.MidiIn(rtapi=api, name=name, queue_size_limit=4096)
        else:
            self._rt = rtmidi.MidiIn(rtapi=api, queue_size_limit=4096)
        try:
            if virtual:
                self._rt.open_virtual_port(name)
            else:
                self._open(name)
            # Events that are only a sysex, a clock tick or active sensing never reach Python
            # (a clock would wake it 48 times a second for nothing that travels); a clock byte
            # inside a note's bytes is the parser's to skip.
            self._rt.ignore_types(sysex=True, timing=True, active_sense=True)
            if api == rtmidi.API_UNIX_JACK:
                self._poller = threading.Thread(
                    target=self._poll, name=f"midi-in {name}", daemon=True
                )
                self._poller.start()
            else:
                self._rt.set_callback(self._received)
        except BaseException:
            self._rt.delete()
            raise

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        else:
            self._rt.cancel_callback()  # before closing: no callback may run into a closed port
        self._rt.close_port()
        self._rt.delete()

    def _open(self, name: str) -> None:
        names = list(self._rt.get_ports())
        if name not in names:
            raise OSError(f"no MIDI input {name!r} now")
        try:
            self._rt.open_port(names.index(name))
        except rtmidi.RtMidiError as exc:
            raise OSError(f"cannot open {name!r}: {exc}") from None

    def _poll(self) -> None:
        while not self._stop.is_set():
            event = self._rt.get_message()
            if event is None:
                time.sleep(self._poll_seconds)
            else:
                self._received(event)

    def _received(self, event: tuple[list[int], float], _data: Any = None) -> None:
        # On rtmidi's thread: an exception here would only be printed, so it is logged once.
        data, _delta = event
        try:
            for message in self._parser.feed(data):
                self._on_message(message)
        except Exception as exc:
            if not self._failed:
                log.warning("a MIDI input's message was lost", port=self.name, error=str(exc))
            self._failed = True
