"""Which notes are sounding, so that they can all be released when the music stops short.

    sounding = SoundingNotes()
    sounding.observe(message)              # every message sent to a synth (or over the link)
    ...
    for message in sounding.release():     # the link dropped, the session ended
        synth.send(message)

A synth holds a note from its note-on until its note-off; if the note-off is lost with the link,
the note sounds for ever. ``release()`` gives a note-off for each note still held, then, on every
channel that was used, sustain off (CC 64 = 0: a held pedal keeps released notes ringing) and all
notes off (CC 123: catches what this side never saw, e.g. notes a synth's arpeggiator started).
"""

from __future__ import annotations

import mido

SUSTAIN = 64
ALL_NOTES_OFF = 123


class SoundingNotes:
    """The notes one stream of messages has left sounding, per channel."""

    def __init__(self) -> None:
        self._notes: dict[tuple[int, int], int] = {}  # (channel, note) → velocity, in played order
        self._channels: set[int] = set()

    @property
    def notes(self) -> frozenset[tuple[int, int]]:
        """``(channel, note)`` of every note sounding."""
        return frozenset(self._notes)

    @property
    def channels(self) -> frozenset[int]:
        """Every channel a channel message has used since the last release."""
        return frozenset(self._channels)

    def observe(self, message: mido.Message) -> None:
        channel = getattr(message, "channel", None)
        if channel is None:
            return
        self._channels.add(channel)
        if message.type == "note_on" and message.velocity > 0:
            self._notes[(channel, message.note)] = message.velocity
        elif message.type in ("note_on", "note_off"):  # note-on with velocity 0 is a note-off
            self._notes.pop((channel, message.note), None)

    def release(self) -> list[mido.Message]:
        """The messages that silence everything observed, and forget it all."""
        messages = [
            mido.Message("note_off", channel=channel, note=note, velocity=0)
            for channel, note in self._notes
        ]
        for channel in sorted(self._channels):
            messages.append(
                mido.Message("control_change", channel=channel, control=SUSTAIN, value=0)
            )
            messages.append(
                mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0)
            )
        self._notes.clear()
        self._channels.clear()
        return messages
