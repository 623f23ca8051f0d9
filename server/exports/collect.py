"""What goes into an export: the database read into JSON Lines files.

Run by :func:`server.exports.services.collect` inside its read transaction.

Everything is read in one read transaction (a consistent snapshot; check-ins
go on meanwhile under WAL), row by row from SQLite cursors, and written
straight to files in a private work folder, hashed on the way: memory stays
flat however large the history is.  Never read: users and password hashes,
device tokens and their hashes, enrollment tokens, label keys, private keys.

Data sets, and what "since the last export" means for each:

- ``devices.jsonl``, ``releases.jsonl``: the whole inventory and every
  release, as they are now (small, and the vendor wants the current state).
- ``health.jsonl``: per device, hourly (and, for old history, daily)
  min/max/avg/count of every numeric metric, for the whole hours in
  ``[from, to)``; raw check-ins still held are rolled up on the fly.
- ``samples.jsonl``: raw check-ins within ``export_incident_window`` seconds
  of an incident (a device flagged unhealthy now, a failed update, an error
  or operator report) in this export.
- ``alerts.jsonl``: alerts opened since the last export, and older ones
  still open or closed since then.
- ``update_reports.jsonl``, ``imports.jsonl``, ``audit.jsonl``,
  ``reports.jsonl``, ``report_notes.jsonl``, ``report_attachments.jsonl``:
  the rows added since the last export (by id); attachment content as
  ``attachments/<sha256>``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server import audit, dialect
from server.models import database
from server.settings import Settings

HOUR = 3600  # seconds
COPY_CHUNK = 1 << 20  # bytes


@dataclass
class FileEntry:
    name: str
    size: int
    sha256: str
    records: int | None = None  # JSON Lines records; None for attachments

    def to_dict(self) -> dict:
        d = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.records is not None:
            d["records"] = self.records
        return d


def iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class JsonLines:
    """A JSON Lines file being written: hashed and counted on the way.
    ``ensure_ascii``: text from devices and people stays escaped data."""

    def __init__(self, folder: Path, name: str, progress=None):
        self.name = name
        self.file = open(folder / name, "xb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.hash = hashlib.sha256()
        self.size = self.records = 0
        self.progress = progress

    def write(self, obj: dict) -> None:
        line = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
        self.file.write(line)
        self.hash.update(line)
        self.size += len(line)
        self.records += 1
        if self.progress and self.records % 5000 == 0:
            self.progress(self.size)

    def close(self) -> FileEntry:
        self.file.close()
        return FileEntry(self.name, self.size, self.hash.hexdigest(), self.records)


def _rows(sql: str, params=()):
    """Rows of a query, fetched in batches from one cursor."""
    cursor = database.execute_sql(sql, params)
    while batch := cursor.fetchmany(1000):
        yield from batch


def _table_exists(name: str) -> bool:
    return dialect.table_exists(database, name)


def _max_id(table: str) -> int:
    if not _table_exists(table):
        return 0
    return database.execute_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]


def _json(text, default):
    try:
        return json.loads(text) if text else default
    except ValueError:
        return text


def _fingerprint(public_key_b64: str | None) -> str | None:
    if not public_key_b64:
        return None
    try:
        return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()
    except ValueError:
        return None


# id ranges ------------------------------------------------------------------------

ID_TABLES = {  # data set -> table whose new rows (by id) it exports
    "update_reports": "update_report",
    "imports": "import_record",
    "audit": "audit_log",
    "reports": "report",
    "report_notes": "report_note",
    "alerts": "alert",
}


def current_ranges(start: dict | None, now: int) -> dict:
    """What this export covers: from where the last one stopped (``start``,
    or everything) up to now.  Id ranges are (after_id, to_id]; health is
    whole hours [from, to) in unix seconds."""
    start = start or {}
    ranges = {}
    for data_set, table in ID_TABLES.items():
        after = int((start.get(data_set) or {}).get("to_id", 0))
        ranges[data_set] = {"after_id": after, "to_id": max(_max_id(table), after)}
    health_from = int((start.get("health") or {}).get("to", 0))
    ranges["health"] = {"from": health_from, "to": max(now - now % HOUR, health_from)}
    return ranges


# the data sets -----------------------------------------------------------------------

class Collector:
    """Writes every data set into ``folder``; :attr:`files` lists what it wrote."""

    def __init__(self, settings: Settings, folder: Path, ranges: dict, progress=None):
        self.settings = settings
        self.folder = folder
        self.ranges = ranges
        self.progress = progress
        self.files: list[FileEntry] = []
        self.written = 0

    def _report(self, size: int) -> None:
        if self.progress:
            self.progress(self.written + size, None, len(self.files))

    def _open(self, name: str) -> JsonLines:
        return JsonLines(self.folder, name, self._report)

    def _done(self, out: JsonLines) -> None:
        entry = out.close()
        self.files.append(entry)
        self.written += entry.size
        self._report(0)

    def collect(self) -> list[FileEntry]:
        for step in (self.devices, self.releases, self.rollouts, self.offers, self.health, self.samples,
                     self.update_reports, self.alerts, self.imports, self.reports, self.audit):
            step()
        return self.files

    def devices(self) -> None:
        out = self._open("devices.jsonl")
        sql = ("SELECT d.id, d.device_id, d.hardware, d.firmware, d.state, d.state_reason, d.state_changed_at, "
               "d.state_changed_by, d.enrolled_at, d.last_enroll_at, d.last_seen, d.last_address, d.checkins, "
               "d.metrics, d.health, d.reboots, d.update_status, "
               f"(SELECT {dialect.group_concat(database, 't.tag', ' ')} FROM device_tag t WHERE t.device = d.id), "
               "(SELECT k.public_key FROM device_key k WHERE k.device = d.id AND k.state = 'active' LIMIT 1) "
               "FROM device d ORDER BY d.id")
        for r in _rows(sql):
            out.write({"device": r[1], "hardware": r[2], "firmware": r[3], "state": r[4], "state_reason": r[5],
                       "state_changed_at": r[6], "state_changed_by": r[7], "enrolled_at": r[8],
                       "last_enroll_at": r[9], "last_seen": iso(r[10]), "last_address": r[11], "checkins": r[12],
                       "metrics": _json(r[13], {}), "health": _json(r[14], []), "reboots": _json(r[15], []),
                       "update_status": _json(r[16], None), "tags": sorted((r[17] or "").split()),
                       "key_sha256": _fingerprint(r[18])})
        self._done(out)

    def releases(self) -> None:
        out = self._open("releases.jsonl")
        for r in _rows("SELECT id, repository, target_path, version, target_hardware, length, sha256, hardware, "
                       "group_tag, allow_downgrade, approved_at, approved_by, withdrawn_at, withdrawn_by "
                       "FROM firmware_release ORDER BY id"):
            out.write({"id": r[0], "repository": r[1], "target_path": r[2], "version": r[3],
                       "target_hardware": _json(r[4], []), "length": r[5], "sha256": r[6], "hardware": r[7],
                       "group": r[8], "allow_downgrade": bool(r[9]), "approved_at": r[10], "approved_by": r[11],
                       "withdrawn_at": r[12], "withdrawn_by": r[13]})
        self._done(out)

    def rollouts(self) -> None:
        """Every rollout as it is now (a halt with its reason), if the schema has them."""
        out = self._open("rollouts.jsonl")
        if _table_exists("rollout"):
            for r in _rows("SELECT id, release_id, state, waves, current_wave, soak, min_success, min_sample, "
                           "halt_reason, halted_at, created_at, created_by, updated_at FROM rollout ORDER BY id"):
                waves = _json(r[3], [])
                started = {w: (size, s, f) for w, size, s, f in _rows(
                    "SELECT wave, size, started_at, finished_at FROM rollout_wave WHERE rollout = ?", (r[0],))}
                out.write({"id": r[0], "release_id": r[1], "state": r[2], "current_wave": r[4], "soak": r[5],
                           "min_success": r[6], "min_sample": r[7], "halt_reason": r[8], "halted_at": iso(r[9]),
                           "created_at": r[10], "created_by": r[11], "updated_at": r[12],
                           "waves": [{"number": n, **wave, "size": started.get(n, (None,))[0],
                                      "started_at": iso(started.get(n, (None, None))[1]),
                                      "finished_at": iso(started.get(n, (None, None, None))[2])}
                                     for n, wave in enumerate(waves, 1)]})
        self._done(out)

    def offers(self) -> None:
        """What each device was offered (rollout and wave, outcome, health
        after it) and firmware it reported that no offer explains."""
        out = self._open("update_offers.jsonl")
        if _table_exists("update_offer"):
            for r in _rows("SELECT d.device_id, o.release_id, o.version, o.rollout, o.wave, o.offered_at, "
                           "o.flags_before, o.outcome, o.outcome_at, o.unhealthy, o.unhealthy_at "
                           "FROM update_offer o JOIN device d ON d.id = o.device ORDER BY o.id"):
                out.write({"device": r[0], "release_id": r[1], "version": r[2], "rollout": r[3], "wave": r[4],
                           "offered_at": iso(r[5]), "flags_before": _json(r[6], []), "outcome": r[7],
                           "outcome_at": iso(r[8]), "unhealthy": r[9], "unhealthy_at": iso(r[10])})
        self._done(out)
        out = self._open("firmware_events.jsonl")
        if _table_exists("firmware_event"):
            for r in _rows("SELECT d.device_id, e.at, e.previous, e.version, e.kind FROM firmware_event e "
                           "JOIN device d ON d.id = e.device ORDER BY e.id"):
                out.write({"device": r[0], "at": iso(r[1]), "previous": r[2], "version": r[3], "kind": r[4]})
        self._done(out)

    def health(self) -> None:
        """Stored rollups in the window as they are; raw samples rolled up to
        hours on the fly (an hour is either all raw or all rolled up:
        maintenance folds whole hours)."""
        span = self.ranges["health"]
        out = self._open("health.jsonl")
        for device, resolution, ts, data in _rows(
                "SELECT d.device_id, m.resolution, m.ts, m.data FROM metric_sample m JOIN device d ON d.id = m.device "
                "WHERE m.resolution IN (3600, 86400) AND m.ts >= ? AND m.ts < ? ORDER BY m.resolution, m.device, m.ts",
                (span["from"], span["to"])):
            out.write(_rollup_record(device, resolution, ts, _json(data, {})))
        key: tuple[str, int] | None = None
        acc: dict[str, list[float]] = {}  # see _accumulate
        for device, ts, data in _rows(
                "SELECT d.device_id, m.ts, m.data FROM metric_sample m JOIN device d ON d.id = m.device "
                "WHERE m.resolution = 0 AND m.ts >= ? AND m.ts < ? ORDER BY m.device, m.ts",
                (span["from"], span["to"])):
            bucket = (device, ts - ts % HOUR)
            if bucket != key:
                if key is not None:
                    out.write(_rollup_record(key[0], HOUR, key[1], acc))
                key, acc = bucket, {}
            try:
                values = json.loads(data)
            except ValueError:
                continue
            if isinstance(values, dict):
                _accumulate(acc, values)
        if key is not None:
            out.write(_rollup_record(key[0], HOUR, key[1], acc))
        self._done(out)

    def samples(self) -> None:
        """Raw check-ins around this export's incidents: the incidents' windows
        are merged per device (a flood of reports makes one long window, not
        many overlapping ones), then each window's samples read in order."""
        window = self.settings.export_incident_window
        updates, reports = self.ranges["update_reports"], self.ranges["reports"]
        parts = ["SELECT id, last_seen, 'health' FROM device WHERE health NOT IN ('[]', '') AND last_seen >= ?",
                 (f"SELECT device, {dialect.unix_seconds(database, 'received_at')}, 'update_failure' "
                  "FROM update_report "
                  "WHERE step = 'failure' AND id > ? AND id <= ?")]
        params = [self.ranges["health"]["from"], updates["after_id"], updates["to_id"]]
        if _table_exists("report"):
            parts.append("SELECT device, created_ts, 'report:' || kind FROM report WHERE id > ? AND id <= ?")
            params += [reports["after_id"], reports["to_id"]]
        incidents = _rows(" UNION ALL ".join(parts) + " ORDER BY 1, 2", params)
        out = self._open("samples.jsonl")
        current: list | None = None  # [device pk, start, end, kinds]
        for device, ts, kind in incidents:
            if ts is None:
                continue
            if current and current[0] == device and ts - window <= current[2]:
                current[2] = max(current[2], ts + window)
                current[3].add(kind)
                continue
            if current:
                self._window_samples(out, *current)
            current = [device, ts - window, ts + window, {kind}]
        if current:
            self._window_samples(out, *current)
        self._done(out)

    def _window_samples(self, out: JsonLines, device: int, start: int, end: int, kinds: set) -> None:
        for device_id, ts, data in _rows(
                "SELECT d.device_id, m.ts, m.data FROM metric_sample m JOIN device d ON d.id = m.device "
                "WHERE m.device = ? AND m.resolution = 0 AND m.ts BETWEEN ? AND ? ORDER BY m.ts", (device, start, end)):
            out.write({"device": device_id, "at": iso(ts), "ts": ts, "incidents": sorted(kinds),
                       "metrics": _json(data, {})})

    def update_reports(self) -> None:
        span = self.ranges["update_reports"]
        out = self._open("update_reports.jsonl")
        for r in _rows("SELECT u.id, d.device_id, u.report_id, u.release_id, f.repository, f.target_path, f.version, "
                       "u.step, u.reason, u.at, u.received_at FROM update_report u JOIN device d ON d.id = u.device "
                       "LEFT JOIN firmware_release f ON f.id = u.release_id WHERE u.id > ? AND u.id <= ? ORDER BY u.id",
                       (span["after_id"], span["to_id"])):
            out.write({"id": r[0], "device": r[1], "report_id": r[2], "release_id": r[3], "repository": r[4],
                       "target_path": r[5], "version": r[6], "step": r[7], "reason": r[8], "at": r[9],
                       "received_at": r[10]})
        self._done(out)

    def alerts(self) -> None:
        """Alerts opened since the last export, and older ones still open or
        closed since then (with their end)."""
        span = self.ranges["alerts"]
        since = iso(self.ranges["health"]["from"]) or ""
        out = self._open("alerts.jsonl")
        for r in _rows("SELECT id, kind, subject, detail, opened_at, closed_at, close_reason FROM alert "
                       "WHERE id <= ? AND (id > ? OR closed_at IS NULL OR closed_at >= ?) ORDER BY id",
                       (span["to_id"], span["after_id"], since)):
            out.write({"id": r[0], "kind": r[1], "subject": r[2], "detail": r[3], "opened_at": r[4],
                       "closed_at": r[5], "close_reason": r[6]})
        self._done(out)

    def imports(self) -> None:
        span = self.ranges["imports"]
        out = self._open("imports.jsonl")
        for r in _rows("SELECT id, started_at, finished_at, operator, source, bundle_digest, status, reason, details "
                       "FROM import_record WHERE id > ? AND id <= ? ORDER BY id", (span["after_id"], span["to_id"])):
            out.write({"id": r[0], "started_at": r[1], "finished_at": r[2], "operator": r[3], "source": r[4],
                       "bundle_digest": r[5], "status": r[6], "reason": r[7], "details": _json(r[8], {})})
        self._done(out)

    def reports(self) -> None:
        """Error and operator reports, their triage notes and attachments
        (migration 0004), when this appliance has them."""
        if not _table_exists("report"):
            return
        span = self.ranges["reports"]
        out = self._open("reports.jsonl")
        for r in _rows("SELECT r.id, d.device_id, r.source, r.report_id, r.kind, r.severity, r.message, r.firmware, "
                       "r.occurred_at, r.reporter, r.snapshot, r.attachment_bytes, r.status, r.status_changed_at, "
                       "r.status_changed_by, r.created_at FROM report r JOIN device d ON d.id = r.device "
                       "WHERE r.id > ? AND r.id <= ? ORDER BY r.id", (span["after_id"], span["to_id"])):
            out.write({"id": r[0], "device": r[1], "source": r[2], "report_id": r[3], "kind": r[4], "severity": r[5],
                       "message": r[6], "firmware": r[7], "occurred_at": r[8], "reporter": r[9],
                       "snapshot": _json(r[10], {}), "attachment_bytes": r[11], "status": r[12],
                       "status_changed_at": r[13], "status_changed_by": r[14], "created_at": r[15]})
        self._done(out)
        if _table_exists("report_note"):
            notes = self.ranges["report_notes"]
            out = self._open("report_notes.jsonl")
            for r in _rows("SELECT id, report, action, text, author, at FROM report_note WHERE id > ? AND id <= ? "
                           "ORDER BY id", (notes["after_id"], notes["to_id"])):
                out.write({"id": r[0], "report": r[1], "action": r[2], "text": r[3], "author": r[4], "at": r[5]})
            self._done(out)
        if _table_exists("report_attachment"):
            self._attachments(span)

    def _attachments(self, span: dict) -> None:
        out = self._open("report_attachments.jsonl")
        blobs: list[tuple[str, int]] = []
        for r in _rows("SELECT id, report, name, size, sha256 FROM report_attachment WHERE report > ? AND report <= ? "
                       "ORDER BY id", (span["after_id"], span["to_id"])):
            sha = str(r[4]).lower()
            ok = len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
            record = {"id": r[0], "report": r[1], "name": r[2], "size": r[3], "sha256": r[4],
                      "file": f"attachments/{sha}" if ok else None}
            if ok and self._copy_blob(sha):
                blobs.append((sha, r[3]))
            elif ok:
                record["file"], record["missing"] = None, True
            out.write(record)
        self._done(out)

    def _copy_blob(self, sha: str) -> bool:
        """Copy one attachment blob (once per content) into the work folder,
        checking its hash; False when it is gone or not what it should be."""
        target = self.folder / "attachments" / sha
        if target.exists():
            return True
        source = self.settings.home / "reports" / "blobs" / sha[:2] / sha
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        digest, size = hashlib.sha256(), 0
        target.parent.mkdir(exist_ok=True)
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                return False
            with open(target, "xb") as dst:
                while data := src.read(COPY_CHUNK):
                    digest.update(data)
                    dst.write(data)
                    size += len(data)
        if digest.hexdigest() != sha:
            target.unlink()
            return False
        self.files.append(FileEntry(f"attachments/{sha}", size, sha))
        self.written += size
        return True

    def audit(self) -> None:
        span = self.ranges["audit"]
        out = self._open("audit.jsonl")
        for rec in audit.iter_rows(span["after_id"], span["to_id"]):
            out.write(rec)
        self._done(out)
        span["from_hash"] = audit.hash_before(span["after_id"])
        span["head_hash"] = audit.hash_before(span["to_id"])


def _accumulate(acc: dict, values: dict) -> None:
    """Fold one raw sample into ``{metric: [min, max, sum, count]}`` in place;
    the same metrics as ``server.devices.maintenance.flatten`` (numbers at the
    top level and in ``gauges`` and ``error_counters``; booleans are not)."""
    for name, value in values.items():
        kind = type(value)
        if kind is int or kind is float:
            _add(acc, name, value)
        elif kind is dict and name in _NESTED:
            for sub, v in value.items():
                if type(v) is int or type(v) is float:
                    _add(acc, f"{name}.{sub}", v)


def _add(acc: dict, name: str, value) -> None:
    a = acc.get(name)
    if a is None:
        acc[name] = [value, value, value, 1]
    else:
        if value < a[0]:
            a[0] = value
        elif value > a[1]:
            a[1] = value
        a[2] += value
        a[3] += 1


_NESTED = ("gauges", "error_counters")


def _rollup_record(device: str, resolution: int, ts: int, data: dict) -> dict:
    metrics = {}
    if isinstance(data, dict):
        for name, value in sorted(data.items()):
            try:
                lo, hi, total, count = value
                metrics[name] = {"min": lo, "max": hi, "avg": total / count if count else None, "count": count}
            except (TypeError, ValueError):
                continue
    return {"device": device, "resolution": "hour" if resolution == HOUR else "day", "start": iso(ts), "ts": ts,
            "metrics": metrics}

