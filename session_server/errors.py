"""The server's one exception root. Each error also subclasses the builtin it resembles."""

from __future__ import annotations


class ServerError(Exception):
    """Root of every error the session server raises on purpose."""


class NotFound(ServerError, LookupError):
    """A named thing (care home, school, device, session …) does not exist."""


class Conflict(ServerError, ValueError):
    """The request clashes with what is already there (a duplicate name, a revoked code …)."""


class InvalidInput(ServerError, ValueError):
    """The request is well-formed but its values make no sense (an RRULE that never fires …)."""
