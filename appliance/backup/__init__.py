"""Backup and restore of a whole appliance (``airlock backup``/``restore``):
the file format and encryption (``crypto``) and the two operations
(``service``)."""

from appliance.backup.service import BackupError, BackupResult, RestoreResult, backup, restore

__all__ = ["BackupError", "BackupResult", "RestoreResult", "backup", "restore"]
