"""Every error the agent raises; each message says what to do."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every agent error."""


class UsageError(AgentError):
    """A command was given something it cannot use (too many attachments,
    a bad simulator bound): nothing was sent."""


class ConfigError(UsageError):
    """The configuration is missing something or holds a bad value."""


class StateError(AgentError):
    """The agent's state folder holds a file it cannot read or parse."""


class UnreachableError(AgentError):
    """The appliance did not answer (network down, appliance restarting)."""


class TlsPinError(UnreachableError):
    """The server's TLS certificate is not the pinned one (or TLS failed):
    nothing was sent.  The agent tries again later, rediscovering by mDNS."""


class PlainHttpRefusedError(AgentError):
    """The token would have crossed the network in clear: nothing was sent."""


class ApiError(AgentError):
    """The appliance answered with an error status."""

    def __init__(self, status: int, code: str, message: str, body: dict | None = None):
        super().__init__(f"appliance answered {status} {code}: {message}")
        self.status = status
        self.code = code
        self.body = body or {}


class TokenRefusedError(AgentError):
    """The appliance no longer accepts our token: enroll again."""


class DeviceRefusedError(AgentError):
    """Plant IT rejected or decommissioned this device (or its key)."""


class NotAcceptedError(AgentError):
    """Enrollment is still pending: plant IT has not accepted the device yet."""


class UpdateError(AgentError):
    """An update could not be fetched, verified or installed; the message is the reason reported."""


class SpoolFullError(AgentError):
    """The spool holds its maximum number of entries: nothing more is kept
    until the appliance takes some."""
