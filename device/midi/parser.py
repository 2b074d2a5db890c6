"""A raw MIDI 1.0 byte stream (a DIN-MIDI UART, a USB-MIDI cable's payload) into whole messages.

    parser = StreamParser()
    for message in parser.feed(chunk):     # bytes as they arrive, split anywhere
        ...

mido's own ``Parser`` is not enough here: it forgets the status after each message (so running
status, which keyboards use to save bytes, loses every note after the first) and a real-time byte
inside a message throws the half-read message away (so a clock tick between a note's bytes loses
the note). The MIDI 1.0 rules this follows instead:

- A channel-voice status byte starts running status: further data bytes make more messages of
  the same kind until another status byte comes.
- Real-time bytes (0xF8-0xFF) may come anywhere, even between a message's bytes; they are
  messages of their own and change nothing else.
- System common bytes (0xF0-0xF7) cancel running status; a sysex (0xF0 … 0xF7) is kept whole
  up to ``MAX_SYSEX`` bytes and dropped beyond that (nothing here needs a long one, and an
  endless sysex must not grow memory).
- A message cut short by a new status byte is dropped; data bytes with no status are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import mido

MAX_SYSEX = 1024
_SYSEX_START = 0xF0
_SYSEX_END = 0xF7
# Data bytes after each status that is not real-time (undefined ones are absent: ignored).
_DATA_BYTES: dict[int, int] = {
    **{status: 2 for high in (0x80, 0x90, 0xA0, 0xB0, 0xE0) for status in range(high, high + 16)},
    **{status: 1 for high in (0xC0, 0xD0) for status in range(high, high + 16)},
    0xF1: 1,  # MTC quarter frame
    0xF2: 2,  # song position
    0xF3: 1,  # song select
    0xF6: 0,  # tune request
}
_REAL_TIME = frozenset({0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF})  # 0xF9, 0xFD are undefined


class StreamParser:
    """Feeds on bytes, yields ``mido.Message``s; keeps its state between feeds."""

    def __init__(self) -> None:
        self._running: int | None = None  # the channel-voice status that data bytes continue
        self._status: int | None = None  # the status of the message being read
        self._data: list[int] = []
        self._sysex: list[int] | None = None
        self._sysex_overflow = False

    def feed(self, data: Iterable[int]) -> Iterator[mido.Message]:
        """The whole messages ``data`` completes, in order."""
        for byte in data:
            if not 0 <= byte <= 0xFF:
                raise ValueError(f"a MIDI byte is 0-255, not {byte!r}")
            message = self._byte(byte)
            if message is not None:
                yield message

    def _byte(self, byte: int) -> mido.Message | None:
        if byte >= 0xF8:
            return mido.Message.from_bytes([byte]) if byte in _REAL_TIME else None
        if self._sysex is not None:
            return self._sysex_byte(self._sysex, byte)
        if byte >= 0x80:
            return self._status_byte(byte)
        return self._data_byte(byte)

    def _status_byte(self, byte: int) -> mido.Message | None:
        self._data = []
        if byte == _SYSEX_START:
            self._running = self._status = None
            self._sysex, self._sysex_overflow = [byte], False
            return None
        if byte < 0xF0:
            self._running = self._status = byte
            return None
        # System common: cancels running status.
        self._running = None
        length = _DATA_BYTES.get(byte)
        if length == 0:
            self._status = None
            return mido.Message.from_bytes([byte])
        self._status = byte if length is not None else None
        return None

    def _data_byte(self, byte: int) -> mido.Message | None:
        status = self._status if self._status is not None else self._running
        if status is None:
            return None
        self._status = status
        self._data.append(byte)
        if len(self._data) < _DATA_BYTES[status]:
            return None
        message = mido.Message.from_bytes([status, *self._data])
        self._data = []
        # A channel message leaves running status for the next; system common does not.
        self._status = None
        return message

    def _sysex_byte(self, sysex: list[int], byte: int) -> mido.Message | None:
        if byte < 0x80:
            if len(sysex) < MAX_SYSEX:
                sysex.append(byte)
            else:
                self._sysex_overflow = True
            return None
        overflow = self._sysex_overflow
        self._sysex = None
        if byte == _SYSEX_END:
            return None if overflow else mido.Message.from_bytes([*sysex, _SYSEX_END])
        # Any other status ends the sysex unfinished (dropped) and counts as itself.
        return self._status_byte(byte)
