"""What a technician needs to write ``[midi]`` and ``[midi.pad]`` (``twm-device midi``): the
ports there are, which setting picks each, and what each instrument sends when played.

    inputs, outputs = port_names(backend)
    picked = picked_by(settings.midi, inputs, outputs)    # port name → "midi.pad", …
    with watching(backend, inputs, on_message):           # on rtmidi's threads
        ...
    describe(message, port, settings.midi)                # "note 36, channel 1: START (pad)"

Opening an instrument here beside a running box is fine: ALSA's sequencer gives every reader
its own copy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mido

from device.midi.ports import Backend, choose, mido_backend
from device.settings import MidiSettings


def picked_by(midi: MidiSettings, inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, str]:
    """Each port a setting picks, with the setting (the same choice the box makes)."""
    picked: dict[str, str] = {}
    pad = choose(midi.pad.port, inputs) if midi.pad.port else None
    if pad is not None:
        picked[pad] = f"midi.pad.port {midi.pad.port!r}"
    playable = [name for name in inputs if name != pad]
    for setting, patterns, names in (
        ("midi.inputs", midi.inputs, playable),
        ("midi.outputs", midi.outputs, outputs),
    ):
        for pattern in patterns:
            name = choose(pattern, [n for n in names if n not in picked])
            if name is not None:
                picked[name] = f"{setting} {pattern!r}"
    return picked


def describe(message: mido.Message, port: str, midi: MidiSettings) -> str:
    """One line for a message an instrument sent: what it is, in the settings' terms."""
    key: tuple[str, int]
    if message.type in ("note_on", "note_off"):
        key = ("note", message.note)
        action = "down" if message.type == "note_on" and message.velocity > 0 else "up"
    elif message.type == "control_change":
        key, action = ("cc", message.control), f"value {message.value}"
    else:
        return str(message)
    channel = message.channel + 1  # as instruments and their manuals count
    line = f"{key[0]} {key[1]} ({action}), channel {channel}"
    pad = midi.pad
    if pad.port and choose(pad.port, [port]) and pad.channel in (None, channel):
        button = pad.buttons().get(key)
        if button is not None:
            line += f": {button.upper().replace('_', ' ')} on the pad"
    return line


@contextlib.contextmanager
def watching(
    backend: Backend, inputs: Sequence[str], on_message: Callable[[str, mido.Message], None]
) -> Iterator[list[str]]:
    """Every input in ``inputs`` opened, calling ``on_message(port, message)`` on rtmidi's
    threads; yields the names that opened (a port unplugged meanwhile is left out)."""
    chosen = mido_backend(backend)
    opened: list[Any] = []
    try:
        for name in inputs:
            with contextlib.suppress(OSError):  # gone since it was listed

                def callback(message: mido.Message, port: str = name) -> None:
                    on_message(port, message)

                opened.append(chosen.open_input(name, callback=callback))
        yield [port.name for port in opened]
    finally:
        for port in opened:
            port.close()
