"""The box's one exception root. Each error says what to do next, and subclasses the builtin
it resembles."""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every error the box raises on purpose."""


class ConfigError(DeviceError, ValueError):
    """A setting is wrong or missing; the message names the key and what would be valid."""


class AudioError(DeviceError, OSError):
    """The sound card is missing or failed."""


class ControlsError(DeviceError, OSError):
    """The buttons or lights cannot be opened (no GPIO where one was expected)."""
