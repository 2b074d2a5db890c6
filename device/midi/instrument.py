"""Whatever plays the other room's notes in this room: a MIDI output port (a USB synth, through
``device.midi.ports.MidiPorts``) or the built-in software synth.

    instrument.send(mido.Message("note_on", note=60, velocity=90))   # on the event loop

``send`` is called on the event loop, by the playout as each message falls due, so it must never
block: an implementation hands the message to a thread or a bounded queue of its own (a USB port
being pulled out, or a synth rendering, may take its time, and the loop also runs the audio link
and the buttons).
"""

from __future__ import annotations

from typing import Protocol

import mido


class Instrument(Protocol):
    """Plays MIDI messages in the room; ``send`` never blocks."""

    def send(self, message: mido.Message) -> None: ...
