"""Exports: everything the appliance collected, as one signed (optionally
encrypted) file on USB media for the vendor.  See docs/export.md."""

from appliance.export.identity import ApplianceIdentity, ensure_key, public_identity
from appliance.export.media import MediaError
from appliance.export.service import (
           ExportBusyError,
           ExportRefusedError,
           ExportResult,
           run_export,
)

__all__ = ["ApplianceIdentity", "ExportBusyError", "ExportRefusedError", "ExportResult", "MediaError",
           "ensure_key", "public_identity", "run_export"]
