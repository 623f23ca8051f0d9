"""Every error the device side raises on purpose.

Each carries the HTTP status and the short machine-readable ``code`` the API
answers with (``{"error": code, "message": ...}``, see ``server.errors``);
the CLI prints the message as one line.  Messages say what is wrong and what
to do.  A code belongs to one class: to answer with another code, raise
another class (``server.errors.CODES`` lists them all, and the device API's
documentation must too).
"""

from __future__ import annotations

from signing.exceptions import AirlockError


class DeviceError(AirlockError):
    """Base of the device side's errors."""

    status = 400
    code = "bad_request"
    challenge = 'Bearer realm="airlock"'  # WWW-Authenticate on a 401

    def __init__(self, message: str, **extra: object) -> None:
        if {"code", "status", "error", "message"} & set(extra):
            raise TypeError("an error's code and status belong to its class: raise the subclass that has them")
        super().__init__(message)
        self.extra = extra  # more JSON fields for the API answer (e.g. server_time, state)


class InvalidRequestError(DeviceError):
    """A request body or argument is malformed; nothing was stored."""

    status = 400
    code = "invalid_request"


class MalformedJsonError(InvalidRequestError):
    """The body is not one strict UTF-8 JSON document."""

    code = "malformed_json"


class ClockSkewError(InvalidRequestError):
    """An enrollment's timestamp is too far from the appliance's clock (carries ``server_time``)."""

    code = "clock_skew"


class UnsupportedMediaTypeError(DeviceError):
    """The body is not ``application/json``."""

    status = 415
    code = "unsupported_media_type"


class TooLargeError(DeviceError):
    """A request body (or what it carries) is larger than allowed; nothing was stored."""

    status = 413
    code = "too_large"


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


class UnknownReleaseError(ReleaseError):
    """An update report names a release that does not exist."""

    code = "unknown_release"


class ReleaseNotOfferedError(ReleaseError):
    """An update report names a release that was never for this device."""

    code = "release_not_offered"


class UnavailableError(DeviceError):
    """The appliance is too busy to store the request in time; carries ``retry_after``."""

    status = 503
    code = "unavailable"
