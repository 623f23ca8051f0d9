"""The report side's one service layer, used by the device API, the label
form and the CLI (and later the console): filing reports, with their limits,
and triage.

Limits, all checked inside one write transaction before anything is stored,
so a refused report leaves no row and no file behind:

- a device report's attachments: at most ``MAX_ATTACHMENTS``, together at
  most ``report_max_attachment_bytes`` decoded (413);
- per device, at most ``report_rate_per_hour`` device reports and
  ``report_form_rate_per_hour`` operator reports in any hour (429 with the
  seconds until the oldest one leaves the window);
- per device, at most ``report_device_storage_bytes`` of attachments (507).

A resend of a device report (same ``report_id``) is recognised first and
answered as a duplicate, even when the device is over its rate: it stores
nothing, and the device may then drop it from its spool.
"""

from __future__ import annotations

import hmac
import json
import logging

from peewee import fn

from server import audit
from server.clock import iso, iso_from_unix, now_unix, utcnow
from server.devices import services as devices
from server.devices._common import token_hash
from server.devices.exceptions import InvalidTokenError
from server.devices.models import Device, FirmwareRelease
from server.devices.records import DeviceIdentity
from server.devices.writes import writing
from server.models import database, tuples
from server.reports import blobs
from server.reports.exceptions import (
    ConflictError,
    InvalidRequestError,
    LabelRefusedError,
    NotFoundError,
    RateLimitedError,
    ReportTooLargeError,
    StorageFullError,
)
from server.reports.models import DeviceLabel, Report, ReportAttachment, ReportNote
from server.reports.records import (
    SEVERITIES,
    STATUSES,
    AttachmentInfo,
    DeviceReportIn,
    Filed,
    NoteInfo,
    OperatorReportIn,
    ReportDetail,
    ReportSummary,
)
from server.settings import Settings
from server.text import refusal

logger = logging.getLogger(__name__)

HOUR = 3600  # seconds: the rate limits' window
MAX_ATTACHMENTS = 4  # per device report
MAX_PROBLEM = 2000  # characters an operator may type
MAX_REPORTER = 100  # characters of a name or badge
MAX_NOTE = 2000  # characters of a triage note
RECENT_SAMPLES = 5  # raw metric samples kept in a snapshot
LIST_LIMIT = 500  # reports listed at most
RESUBMIT_WINDOW = 600  # seconds an identical operator report counts as a resubmission


# the device's state, captured with each report ---------------------------------------

def device_snapshot(settings: Settings, device_id: str) -> dict:
    """What the appliance knows about the device right now: firmware, state,
    last check-in, health flags, latest and recent metrics, last update result."""
    summary = devices.get_device(settings, device_id)
    row = Device.get(Device.device_id == device_id)
    last_update = json.loads(row.update_status) if row.update_status else None
    if last_update:
        release = FirmwareRelease.get_or_none(FirmwareRelease.id == last_update.get("release_id"))
        last_update["version"] = release.version if release else None
    return {
        "taken_at": iso(utcnow()),
        "firmware": row.firmware,
        "state": row.state,
        "last_checkin": summary.last_seen,
        "online": summary.online,
        "health": summary.health,
        "metrics": json.loads(row.metrics or "{}"),
        "recent_metrics": devices.metric_history(device_id, resolution=0, limit=RECENT_SAMPLES),
        "last_update": last_update,
    }


# limits ------------------------------------------------------------------------------

def _check_rate(device_pk: int, source: str, per_hour: int, now: int) -> None:
    count, oldest = database.execute_sql(
        "SELECT COUNT(*), MIN(created_ts) FROM report WHERE device = ? AND source = ? AND created_ts > ?",
        (device_pk, source, now - HOUR)).fetchone()
    if count >= per_hour:
        wait = max(1, oldest + HOUR - now)
        who = "this device" if source == "device" else "this device's label"
        raise RateLimitedError(f"{who} has filed {count} reports in the last hour, the most allowed "
                               f"({per_hour}): try again in {wait} s; nothing was stored", retry_after=wait)


def _check_attachments(settings: Settings, report: DeviceReportIn) -> int:
    if len(report.attachments) > MAX_ATTACHMENTS:
        raise InvalidRequestError(f"a report may carry at most {MAX_ATTACHMENTS} attachments, not "
                                  f"{len(report.attachments)}")
    names = [a.name for a in report.attachments]
    if len(set(names)) != len(names):
        raise InvalidRequestError("two attachments have the same name")
    size = sum(len(a.content) for a in report.attachments)
    if size > settings.report_max_attachment_bytes:
        raise ReportTooLargeError(f"the attachments hold {size} bytes; a report may carry at most "
                                  f"{settings.report_max_attachment_bytes} (setting report_max_attachment_bytes): "
                                  "send a shorter excerpt; nothing was stored")
    return size


def _check_storage(settings: Settings, device_pk: int, adding: int) -> None:
    if not adding:
        return
    (used,) = database.execute_sql("SELECT COALESCE(SUM(attachment_bytes), 0) FROM report WHERE device = ?",
                                   (device_pk,)).fetchone()
    if used + adding > settings.report_device_storage_bytes:
        raise StorageFullError(f"this device's reports already hold {used} bytes of attachments; "
                               f"{adding} more would pass its share of {settings.report_device_storage_bytes} "
                               "(setting report_device_storage_bytes): send the report without attachments, "
                               "or ask IT to make room; nothing was stored")


def _clean_text(value: str, field: str, limit: int, *, multiline: bool) -> str:
    text = (value or "").replace("\r\n", "\n").strip()
    if not text:
        raise InvalidRequestError(f"{field} is empty")
    if len(text) > limit:
        raise InvalidRequestError(f"{field} is {len(text)} characters; at most {limit} are allowed")
    problem = refusal(field, text, multiline=multiline)
    if problem:
        raise InvalidRequestError(problem)
    return text


# filing ------------------------------------------------------------------------------

def file_device_report(settings: Settings, device: DeviceIdentity, report: DeviceReportIn, *,
                       now: int | None = None) -> Filed:
    """Store a device's error report; a resend of its ``report_id`` is a duplicate."""
    size = _check_attachments(settings, report)
    now = now_unix() if now is None else now
    report_id = report.report_id.lower()
    snapshot = json.dumps(device_snapshot(settings, device.device_id), separators=(",", ":"), sort_keys=True)
    with writing(database):
        still = database.execute_sql("SELECT 1 FROM device WHERE id = ? AND token_hash = ? AND state = 'accepted'",
                                     (device.pk, device.token_hash)).fetchone()
        if still is None:
            raise InvalidTokenError("the token was revoked: enroll again")
        seen = Report.get_or_none((Report.device == device.pk) & (Report.report_id == report_id))
        if seen is not None:
            return Filed(seen.id, duplicate=True)
        _check_rate(device.pk, "device", settings.report_rate_per_hour, now)
        _check_storage(settings, device.pk, size)
        row = Report.create(device=device.pk, source="device", report_id=report_id, kind=report.kind,
                            severity=report.severity, message=report.message, firmware=report.firmware,
                            occurred_at=report.occurred_at, snapshot=snapshot, attachment_bytes=size,
                            created_at=iso_from_unix(now), created_ts=now)
        for attachment in report.attachments:
            sha = blobs.put(settings.home, attachment.content)
            ReportAttachment.create(report=row.id, name=attachment.name, size=len(attachment.content), sha256=sha)
    logger.info("device %s filed report %d (%s, %s)", device.device_id, row.id, report.kind, report.severity)
    return Filed(row.id, duplicate=False)


def label_device(device_id: str, label_key: str | None) -> tuple[int, str]:
    """(device pk, label key hash) if ``label_key`` is the device's current
    label key; otherwise one refusal for every case, so that a guess learns
    nothing about which devices exist."""
    refused = LabelRefusedError("no such device label: scan the label on the device again, or ask IT for a new one")
    if not label_key or len(label_key) > 128:
        raise refused
    found = (DeviceLabel.select(DeviceLabel.device, DeviceLabel.key_hash).join(Device)
             .where((Device.device_id == device_id) & (Device.state != "decommissioned")).tuples().first())
    digest = token_hash(label_key)
    if found is None or not hmac.compare_digest(found[1], digest):
        raise refused
    return found[0], found[1]


def file_operator_report(settings: Settings, device_id: str, label_key: str | None, report: OperatorReportIn, *,
                         now: int | None = None) -> Filed:
    """Store a problem an operator reported through the device's QR label,
    with a snapshot of the device's state at this moment."""
    device_pk, _ = label_device(device_id, label_key)
    problem = _clean_text(report.problem, "what is wrong", MAX_PROBLEM, multiline=True)
    reporter = _clean_text(report.reporter, "name or badge", MAX_REPORTER, multiline=False)
    if report.urgency not in SEVERITIES:
        raise InvalidRequestError(f"urgency must be one of {', '.join(SEVERITIES)}")
    now = now_unix() if now is None else now
    snapshot = json.dumps(device_snapshot(settings, device_id), separators=(",", ":"), sort_keys=True)
    with writing(database):
        # the same report again within minutes: a double tap or a reloaded
        # confirmation page, answered with the report already filed
        same = (Report.select(Report.id)
                .where((Report.device == device_pk) & (Report.source == "operator") & (Report.message == problem)
                       & (Report.reporter == reporter) & (Report.severity == report.urgency)
                       & (Report.created_ts > now - RESUBMIT_WINDOW)).scalar())
        if same is not None:
            return Filed(same, duplicate=True)
        _check_rate(device_pk, "operator", settings.report_form_rate_per_hour, now)
        row = Report.create(device=device_pk, source="operator", kind="operator", severity=report.urgency,
                            message=problem, reporter=reporter, firmware=json.loads(snapshot)["firmware"],
                            snapshot=snapshot, created_at=iso_from_unix(now), created_ts=now)
    logger.info("operator report %d filed against %s", row.id, device_id)
    return Filed(row.id, duplicate=False)


# removing a device (server.devices.services.remove_device) ---------------------------

def reports_of(device_pk: int) -> tuple[int, set[str]]:
    """(number of reports, attachment blob hashes) of a device about to be removed."""
    (count,) = database.execute_sql("SELECT COUNT(*) FROM report WHERE device = ?", (device_pk,)).fetchone()
    shas = {sha for (sha,) in database.execute_sql(
        "SELECT DISTINCT a.sha256 FROM report_attachment AS a JOIN report AS r ON r.id = a.report "
        "WHERE r.device = ?", (device_pk,)).fetchall()}
    return count, shas


def prune_blobs(settings: Settings, shas: set[str]) -> int:
    """Delete the attachment files among ``shas`` that no report names any
    more (blobs are shared by content); call it holding the write gate, after
    the commit that removed the reports.  Returns how many were deleted."""
    deleted = 0
    for sha in sorted(shas):
        if database.execute_sql("SELECT 1 FROM report_attachment WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
            continue
        try:
            blobs.blob_path(settings.home, sha).unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted


# triage ------------------------------------------------------------------------------

def _summary(row: Report, device_id: str) -> ReportSummary:
    return ReportSummary(row.id, device_id, row.source, row.kind, row.severity, row.status, row.message,
                         row.created_at)


def list_reports(status: str | None = None, device_id: str | None = None, limit: int = LIST_LIMIT
                 ) -> list[ReportSummary]:
    """Reports, newest first, optionally only those in ``status`` or of one device."""
    if status is not None and status not in STATUSES:
        raise InvalidRequestError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    query = (Report.select(Report, Device.device_id).join(Device).order_by(Report.id.desc())
             .limit(max(1, min(limit, LIST_LIMIT))))
    if status:
        query = query.where(Report.status == status)
    if device_id:
        query = query.where(Device.device_id == device_id)
    return [_summary(row, row.device.device_id) for row in query]


def count_reports() -> dict[str, int]:
    """How many reports are in each status (every status, zero included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in tuples(Report.select(Report.status, fn.COUNT(Report.id)).group_by(Report.status)):
        counts[status] = n
    return counts


def _row(report_id: int) -> Report:
    row = Report.select(Report, Device.device_id).join(Device).where(Report.id == report_id).first()
    if row is None:
        raise NotFoundError(f"no report {report_id}: see `airlock reports list`")
    return row


def show_report(settings: Settings, report_id: int) -> ReportDetail:
    """One report with its snapshot, attachments and triage notes."""
    row = _row(report_id)
    attachments = [AttachmentInfo(a.name, a.size, a.sha256, str(blobs.blob_path(settings.home, a.sha256)))
                   for a in ReportAttachment.select().where(ReportAttachment.report == row.id)
                   .order_by(ReportAttachment.id)]
    notes = [NoteInfo(n.action, n.text, n.author, n.at)
             for n in ReportNote.select().where(ReportNote.report == row.id).order_by(ReportNote.id)]
    return ReportDetail(_summary(row, row.device.device_id), row.report_id, row.firmware, row.occurred_at,
                        row.reporter, json.loads(row.snapshot or "{}"), row.status_changed_at,
                        row.status_changed_by, attachments, notes)


def _note_text(text: str | None) -> str:
    return "" if text is None or not text.strip() else _clean_text(text, "the note", MAX_NOTE, multiline=True)


def _transition(report_id: int, to: str, allowed_from: tuple[str, ...], who: str, note: str | None,
                action: str | None = None) -> ReportSummary:
    action = action or to
    text = _note_text(note)
    with writing(database):
        row = _row(report_id)
        if row.status not in allowed_from:
            raise ConflictError(f"report {report_id} is {row.status}; only a report that is "
                                f"{' or '.join(allowed_from)} can be {action}")
        stamp = iso(utcnow())
        Report.update(status=to, status_changed_at=stamp, status_changed_by=who).where(Report.id == row.id).execute()
        ReportNote.create(report=row.id, action=action, text=text, author=who, at=stamp)
        audit.record(who, f"report.{action}", f"report {report_id}", {"from": row.status, "note": bool(text)})
        row.status = to
    return _summary(row, row.device.device_id)


def reopen(report_id: int, who: str, note: str | None = None) -> ReportSummary:
    """resolved -> new: the problem is back, or was not solved; it returns to triage."""
    return _transition(report_id, "new", ("resolved",), who, note, action="reopened")


def acknowledge(report_id: int, who: str, note: str | None = None) -> ReportSummary:
    """new -> acknowledged: someone is on it."""
    return _transition(report_id, "acknowledged", ("new",), who, note)


def resolve(report_id: int, who: str, note: str | None = None) -> ReportSummary:
    """new or acknowledged -> resolved."""
    return _transition(report_id, "resolved", ("new", "acknowledged"), who, note)


def add_note(report_id: int, who: str, text: str) -> NoteInfo:
    """Add a note without changing the status."""
    if not (text or "").strip():
        raise InvalidRequestError("the note is empty")
    clean = _note_text(text)
    with writing(database):
        row = _row(report_id)
        note = ReportNote.create(report=row.id, action="note", text=clean, author=who, at=iso(utcnow()))
        audit.record(who, "report.note", f"report {report_id}", {"status": row.status})
    return NoteInfo(note.action, note.text, note.author, note.at)
