"""Devices: enrollment and admission, check-ins with health metrics,
releases approved by IT, and update reports.  ``services`` is the one
service layer used by the API (``views``), the CLI and the console."""
