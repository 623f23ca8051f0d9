"""Reading what an export covers and recording the exports written.

Every read and write of ``export_record`` and ``export_pending`` goes
through here.  An export is noted as pending (synced) just before its file
is renamed on the media, and recorded, with its audit record and without the
note, in one transaction after: a power loss in between leaves the note for
the next export to settle (see ``appliance/export/service.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from server import audit
from server.clock import now_iso, now_unix
from server.exports import collect as collecting
from server.exports.records import Collection, ExportRecord
from server.models import database
from server.settings import Settings
from signing.exceptions import AirlockError

_COLUMNS = ExportRecord.columns()


class ExportRefusedError(AirlockError):
    """The export cannot be made as asked."""



def export_totals() -> tuple[int, int]:
    """(exports written, bytes written) since the appliance was made, in one aggregate query."""
    row = database.execute_sql("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM export_record").fetchone()
    return int(row[0]), int(row[1])


def _start_ranges(since: int | None) -> tuple[dict | None, int | None, tuple[int, str] | None]:
    """(where this export starts: None for the very beginning, the export
    re-exported from or None, the last export's sequence and manifest hash)."""
    last = database.execute_sql("SELECT sequence, manifest_sha256, ranges FROM export_record "
                                "ORDER BY sequence DESC LIMIT 1").fetchone()
    last_info = (last[0], last[1]) if last else None
    if since is None:
        return (json.loads(last[2]) if last else None), None, last_info
    row = database.execute_sql("SELECT ranges FROM export_record WHERE sequence = ?", (since,)).fetchone()
    if row is None:
        raise ExportRefusedError(f"there is no export {since} to re-export from: see `airlock audit list` or the "
                                 "export files' numbers")
    ranges = json.loads(row[0])
    start = {}
    for name, span in ranges.items():
        if "after_id" in span:
            start[name] = {"to_id": span["after_id"]}
        elif "from" in span:
            start[name] = {"to": span["from"]}
    return start, since, last_info


def collect(settings: Settings, folder: Path, *, since: int | None = None, progress=None) -> Collection:
    """Write every data set since the last export (or since export ``since``)
    into ``folder``, all read in one snapshot of the database."""
    with database.atomic():  # one read snapshot for every data set
        start, since_seq, last = _start_ranges(since)
        ranges = collecting.current_ranges(start, now_unix())
        files = collecting.Collector(settings, folder, ranges, progress).collect()
    return Collection(sequence=(last[0] + 1) if last else 1, re_export_since=since_seq,
                      previous_sequence=last[0] if last else None,
                      previous_manifest_sha256=last[1] if last else None, ranges=ranges, files=files)


def note_pending(record: ExportRecord) -> None:
    """Note the export whose file is about to be renamed on the media."""
    with database.atomic("IMMEDIATE"):
        database.execute_sql(f"INSERT INTO export_pending (id, {', '.join(_COLUMNS)}) "
                             f"VALUES (1, {', '.join('?' * len(_COLUMNS))})", record.values())


def drop_pending() -> None:
    with database.atomic("IMMEDIATE"):
        database.execute_sql("DELETE FROM export_pending")


def pending() -> ExportRecord | None:
    """The export a power loss left between its rename and its record, if any."""
    row = database.execute_sql(f"SELECT {', '.join(_COLUMNS)} FROM export_pending WHERE id = 1").fetchone()
    return ExportRecord(**dict(zip(_COLUMNS, row, strict=True))) if row else None


def record_export(record: ExportRecord, *, recovered: bool = False) -> None:
    """The export is done: its record and audit record; the pending note goes."""
    with database.atomic("IMMEDIATE"):
        database.execute_sql(
            f"INSERT INTO export_record (finished_at, {', '.join(_COLUMNS)}) "
            f"VALUES (?, {', '.join('?' * len(_COLUMNS))})", [now_iso(), *record.values()])
        database.execute_sql("DELETE FROM export_pending")
        details = {"sequence": record.sequence, "bytes": record.bytes, "file_sha256": record.file_sha256,
                   "manifest_sha256": record.manifest_sha256, "re_export_since": record.re_export_since,
                   "encrypted_for": record.encrypted_for}
        if recovered:
            details["recorded_after_power_loss"] = True
        audit.record(record.operator, "export.written", record.file_name, details)


def last_export() -> ExportRecord | None:
    """The newest recorded export, or None before the first."""
    row = database.execute_sql(f"SELECT {', '.join(_COLUMNS)} FROM export_record ORDER BY sequence DESC LIMIT 1"
                               ).fetchone()
    return ExportRecord(*row) if row else None


def export_history(limit: int = 50) -> list[ExportRecord]:
    """The newest recorded exports first."""
    # the limit is an int written into the SQL (no placeholder: "?" is SQLite's, "%s" PostgreSQL's)
    rows = database.execute_sql(f"SELECT {', '.join(_COLUMNS)} FROM export_record ORDER BY sequence DESC "
                                f"LIMIT {int(limit)}").fetchall()
    return [ExportRecord(*row) for row in rows]


def record_interrupted(operator: str, record: ExportRecord) -> None:
    """A pending export never reached the media whole: its number is free again."""
    with database.atomic("IMMEDIATE"):
        database.execute_sql("DELETE FROM export_pending")
        audit.record(operator, "export.interrupted", record.file_name,
                     {"sequence": record.sequence, "file_sha256": record.file_sha256})
