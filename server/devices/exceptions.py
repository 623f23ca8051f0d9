"""Every error the device side raises on purpose.

Each carries the HTTP status and the short machine-readable ``code`` the API
answers with (``{"error": code, "message": ...}``); the CLI prints the message
as one line.  Messages say what is wrong and what to do.
"""

from __future__ import annotations

from signing.exceptions import AirlockError


class DeviceError(AirlockError):
    """Base of the device side's errors."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **extra):
        super().__init__(message)
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra  # more JSON fields for the API answer (e.g. server_time)


class InvalidRequestError(DeviceError):
    """A request body or argument is malformed; nothing was stored."""

    status = 400
    code = "invalid_request"


class BadSignatureError(DeviceError):
    """An enrollment's signature does not verify with the key it carries."""

    status = 401
    code = "bad_signature"


class ReplayError(DeviceError):
    """An enrollment nonce was seen before for this key."""

    status = 409
    code = "replayed_request"


class InvalidTokenError(DeviceError):
    """A bearer token is missing, unknown or revoked."""

    status = 401
    code = "invalid_token"


class DeviceRefusedError(DeviceError):
    """The device (or the key it presents) has been rejected or decommissioned."""

    status = 403
    code = "device_refused"


class NotFoundError(DeviceError):
    """No such device, release or rule."""

    status = 404
    code = "not_found"


class ConflictError(DeviceError):
    """The request does not fit the current state (e.g. nothing to accept)."""

    status = 409
    code = "conflict"


class ReleaseError(DeviceError):
    """A release cannot be approved as asked."""

    status = 422
    code = "release_refused"
