"""The provisioning tool's one exception root. Each error is a sentence a technician can act on
(what is wrong, what to do next) and never carries a secret; each also subclasses the builtin it
resembles."""

from __future__ import annotations


class ProvisionError(Exception):
    """Root of every error twm-provision raises on purpose; printed without a traceback."""


class UsageError(ProvisionError, ValueError):
    """The command line or an inventory file is wrong (exit status 2)."""


class HostKeyError(ProvisionError, ConnectionError):
    """The box's SSH host key is not the one pinned for it, or is not pinned yet."""

    def __init__(self, message: str, fingerprint: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class HostKeyUnknown(HostKeyError):
    """First contact: nobody has confirmed this box's fingerprint yet."""


class HostKeyChanged(HostKeyError):
    """The box presents a different key than the one pinned: refused."""


class Unreachable(ProvisionError, ConnectionError):
    """The box does not answer over SSH, refuses our key, or the connection dropped."""


class TargetUnsuitable(ProvisionError, RuntimeError):
    """The box is not a system this tool can set up (OS, architecture, Python, disk)."""


class RemoteFailed(ProvisionError, RuntimeError):
    """A command on the box failed; the message names the command and its last output."""


class ServerFailed(ProvisionError, RuntimeError):
    """The session server refused or did not answer."""


class BuildFailed(ProvisionError, RuntimeError):
    """The release (wheel and wheelhouse) could not be built on this machine."""


class HealthFailed(ProvisionError, RuntimeError):
    """After a change the box did not come up healthy."""
