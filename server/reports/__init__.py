"""Problem reports: devices' error reports (``POST /api/v1/reports``),
operators' reports filed through a device's QR label (``/report/<device>``),
and IT's triage of both.  ``services`` is the one service layer used by the
API (``views``), the label form (``form``) and the CLI."""
