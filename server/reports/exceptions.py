"""The errors the report side raises on purpose.  They extend the device
side's hierarchy, so every one carries its HTTP status and API ``code``."""

from __future__ import annotations

from server.devices.exceptions import ConflictError, DeviceError, InvalidRequestError, NotFoundError, TooLargeError

__all__ = [
    "ConflictError",
    "FormExpiredError",
    "InvalidRequestError",
    "LabelRefusedError",
    "NotFoundError",
    "RateLimitedError",
    "ReportTooLargeError",
    "StorageFullError",
]


class RateLimitedError(DeviceError):
    """Too many reports from one device (or against one label) this hour; nothing was stored."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class ReportTooLargeError(TooLargeError):
    """A report or its attachments exceed the configured size; nothing was stored."""


class StorageFullError(DeviceError):
    """The device's share of attachment storage is used up; nothing was stored."""

    status = 507
    code = "storage_full"


class LabelRefusedError(DeviceError):
    """No such device, or the label key is missing or not the device's current one."""

    status = 404
    code = "not_found"


class FormExpiredError(DeviceError):
    """The form's anti-forgery token is missing, forged or too old (a cross-site post, or a stale page)."""

    status = 403
    code = "forbidden"
