"""What goes wrong with MIDI, under the box's one root (``device.errors.DeviceError``)."""

from __future__ import annotations

from device.errors import DeviceError


class MidiError(DeviceError):
    """Root of the MIDI errors."""


class MidiDataError(MidiError, ValueError):
    """Bytes that are not the MIDI we accept (from the other side, or from an instrument)."""


class MidiPortError(MidiError, OSError):
    """A MIDI port cannot be listed, opened or written."""
