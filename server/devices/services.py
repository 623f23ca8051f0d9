"""The device inventory: listing, showing and tagging devices.

The device side's service layer is split by domain; this module re-exports
the whole of it, so the API, the CLI and the console import one place:
enrollment and admission (``enrollment``), check-ins (``checkins``),
releases and update reports (``releases``), history upkeep (``maintenance``).
"""

from __future__ import annotations

import json
import logging
import re

from peewee import Case, IntegrityError, fn

from server import audit
from server.clock import iso_from_unix, now_unix
from server.devices._common import key_fingerprint
from server.devices.checkins import OFFLINE_AFTER_INTERVALS, authenticate, is_online, record_checkin
from server.devices.enrollment import (
    accept,
    add_rule,
    decommission,
    enroll,
    list_rules,
    reject,
    remove_rule,
    verify_request,
)
from server.devices.exceptions import InvalidRequestError, NotFoundError
from server.devices.history import device_history
from server.devices.maintenance import run_maintenance
from server.devices.models import (
    Device,
    DeviceKey,
    DeviceTag,
    FirmwareRelease,
    MetricSample,
    UpdateReport,
)
from server.devices.openapi import DEVICE_STATES, TAG
from server.devices.records import (
    DeviceDetail,
    DevicePage,
    DeviceQuery,
    DeviceSummary,
    HistoryEntry,
    KeyInfo,
    RemovedDevice,
    UpdateReportInfo,
)
from server.devices.releases import approve, list_releases, record_report, version_key, withdraw
from server.devices.writes import write_gate, writing
from server.models import database, tuples
from server.settings import Settings

__all__ = [
    "accept", "add_rule", "approve", "authenticate", "decommission", "enroll", "get_device", "list_devices",
    "list_releases", "list_rules", "metric_history", "record_checkin", "record_report", "reject", "remove_device",
    "remove_rule",
    "run_maintenance", "show_device", "tag", "untag", "update_history", "verify_request", "version_key", "withdraw",
]

logger = logging.getLogger(__name__)

_TAG = re.compile(TAG.strip("^$"))
LIST_STATES = DEVICE_STATES + ["offline"]
UPDATE_HISTORY = 50  # reports shown per device


def _summary(settings: Settings, row: Device, tags: list[str], pending_key: bool, now: int) -> DeviceSummary:
    online = row.state == "accepted" and is_online(settings, row.last_seen, now)
    health = list(json.loads(row.health or "[]"))
    if row.state == "accepted" and not online:
        health.insert(0, "offline" if row.last_seen is not None else "never_checked_in")
    status = json.loads(row.update_status) if row.update_status else None
    if status and status.get("step") == "failure":
        health.append("update_failed")
    if pending_key:
        health.append("key_change_pending")
    return DeviceSummary(row.device_id, row.hardware, row.firmware, row.state, row.state_reason,
                         iso_from_unix(row.last_seen), online, health, sorted(tags), pending_key)


def list_devices(settings: Settings, state: str | None = None) -> list[DeviceSummary]:
    """Every device, or those in ``state`` (``offline``: accepted but silent)."""
    if state is not None and state not in LIST_STATES:
        raise InvalidRequestError(f"state {state!r} is not one of {', '.join(LIST_STATES)}")
    now = now_unix()
    query = Device.select().order_by(Device.device_id)
    if state == "offline":
        cutoff = now - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
        query = query.where((Device.state == "accepted") & (Device.last_seen.is_null() | (Device.last_seen < cutoff)))
    elif state:
        query = query.where(Device.state == state)
    tags: dict[int, list[str]] = {}
    for device_pk, tag_name in tuples(DeviceTag.select(DeviceTag.device, DeviceTag.tag)):
        tags.setdefault(device_pk, []).append(tag_name)
    pending = {pk for (pk,) in tuples(DeviceKey.select(DeviceKey.device).where(DeviceKey.state == "pending"))}
    return [_summary(settings, row, tags.get(row.id, []), row.id in pending, now) for row in query]


PAGE_STATES = [*DEVICE_STATES, "online", "offline", "flagged"]
PAGE_SORTS = ("device_id", "hardware", "firmware", "state", "last_seen")
MAX_PER_PAGE = 500


def page_devices(settings: Settings, q: DeviceQuery) -> DevicePage:
    """One page of the device list, filtered and sorted in the database (only
    the page's devices are loaded, with their tags), so a page costs about
    the same at 50,000 devices as at 50."""
    if q.state is not None and q.state not in PAGE_STATES:
        raise InvalidRequestError(f"state {q.state[:40]!r} is not one of {', '.join(PAGE_STATES)}")
    column = q.sort.removeprefix("-")
    if column not in PAGE_SORTS:
        raise InvalidRequestError(f"sort {q.sort[:40]!r} is not one of {', '.join(PAGE_SORTS)} (with '-' first "
                                  "for descending)")
    if not 1 <= q.per_page <= MAX_PER_PAGE or q.page < 1:
        raise InvalidRequestError(f"page must be 1 or more and per_page 1 to {MAX_PER_PAGE}")
    now = now_unix()
    cutoff = now - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
    query = Device.select()
    accepted = Device.state == "accepted"
    if q.state == "online":
        query = query.where(accepted & (Device.last_seen >= cutoff))
    elif q.state == "offline":
        query = query.where(accepted & (Device.last_seen.is_null() | (Device.last_seen < cutoff)))
    elif q.state == "flagged":
        query = query.where(accepted & Device.health.is_null(False) & (Device.health != "[]"))
    elif q.state:
        query = query.where(Device.state == q.state)
    if q.hardware:
        query = query.where(Device.hardware == q.hardware)
    if q.firmware:
        query = query.where(Device.firmware == q.firmware)
    if q.flag:
        query = query.where(Device.health.contains(json.dumps(q.flag)))
    if q.prefix:  # a range on the unique index (LIKE would scan every row)
        query = query.where((Device.device_id >= q.prefix) & (Device.device_id < q.prefix + "\U0010ffff"))
    if q.tag:
        query = query.where(Device.id.in_(DeviceTag.select(DeviceTag.device).where(DeviceTag.tag == q.tag)))
    total = query.count()
    field = getattr(Device, column)
    order = field.desc(nulls="last") if q.sort.startswith("-") else field.asc(nulls="last")
    rows = list(query.order_by(order, Device.device_id).limit(q.per_page).offset((q.page - 1) * q.per_page))
    ids = [row.id for row in rows]
    tags: dict[int, list[str]] = {}
    pending: set[int] = set()
    if ids:
        for device_pk, tag_name in tuples(DeviceTag.select(DeviceTag.device, DeviceTag.tag)
                                          .where(DeviceTag.device.in_(ids))):
            tags.setdefault(device_pk, []).append(tag_name)
        pending = {pk for (pk,) in tuples(DeviceKey.select(DeviceKey.device)
                                          .where((DeviceKey.state == "pending") & DeviceKey.device.in_(ids)))}
    return DevicePage(total, q.page, q.per_page,
                      [_summary(settings, row, tags.get(row.id, []), row.id in pending, now) for row in rows])


def count_devices(settings: Settings) -> dict[str, int]:
    """How many devices are in each state, counted in the database (no
    device is loaded): every state of ``DEVICE_STATES``, and ``online``,
    ``offline`` (accepted and silent) and ``flagged`` (with a health flag)."""
    now = now_unix()
    counts = dict.fromkeys([*DEVICE_STATES, "online", "offline", "flagged"], 0)
    for state, n in tuples(Device.select(Device.state, fn.COUNT(Device.id)).group_by(Device.state)):
        counts[state] = n
    cutoff = now - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
    online, flagged = next(iter(tuples(Device.select(  # one pass over the accepted devices for both
        # COUNT of a CASE, not SUM of a comparison: PostgreSQL does not add booleans
        fn.COUNT(Case(None, [(Device.last_seen >= cutoff, 1)])),
        fn.COUNT(Case(None, [(Device.health.is_null(False) & (Device.health != "[]"), 1)])))
        .where(Device.state == "accepted"))))
    counts["online"], counts["flagged"] = online, flagged
    counts["offline"] = counts.get("accepted", 0) - online
    return counts


def firmware_versions() -> list[tuple[str, str, int]]:
    """(model, firmware, devices) for the accepted devices, counted in the
    database: who runs which version (the Releases page, the Overview's chart)."""
    query = (Device.select(Device.hardware, Device.firmware, fn.COUNT(Device.id))
             .where(Device.state == "accepted")
             .group_by(Device.hardware, Device.firmware).order_by(Device.hardware, Device.firmware))
    return [(h, f, n) for h, f, n in tuples(query)]


def _row(device_id: str) -> Device:
    row = Device.get_or_none(Device.device_id == device_id)
    if row is None:
        raise NotFoundError(f"no device {device_id!r} has enrolled: see `airlock devices list`")
    return row


def get_device(settings: Settings, device_id: str) -> DeviceSummary:
    row = _row(device_id)
    tags = [t.tag for t in DeviceTag.select().where(DeviceTag.device == row)]
    pending = DeviceKey.select().where((DeviceKey.device == row) & (DeviceKey.state == "pending")).exists()
    return _summary(settings, row, tags, pending, now_unix())


def show_device(settings: Settings, device_id: str) -> DeviceDetail:
    """Everything about one device: keys, latest metrics, update history."""
    row = _row(device_id)
    summary = get_device(settings, device_id)
    keys = [KeyInfo(key_fingerprint(k.public_key), k.state, k.created_at, k.decided_at, k.decided_by)
            for k in DeviceKey.select().where(DeviceKey.device == row).order_by(DeviceKey.id)]
    reports = tuples(UpdateReport.select(UpdateReport.report_id, FirmwareRelease.id, FirmwareRelease.version,
                                         UpdateReport.step, UpdateReport.reason, UpdateReport.at,
                                         UpdateReport.received_at)
                     .join(FirmwareRelease).where(UpdateReport.device == row).order_by(UpdateReport.id.desc())
                     .limit(UPDATE_HISTORY))
    updates = [UpdateReportInfo(*r) for r in reports]
    names = {0: "raw", 3600: "hourly", 86400: "daily"}
    history = dict.fromkeys(names.values(), 0)
    for resolution, count in tuples(MetricSample.select(MetricSample.resolution, fn.COUNT(MetricSample.id))
                                    .where(MetricSample.device == row).group_by(MetricSample.resolution)):
        history[names[resolution]] = count
    return DeviceDetail(summary, row.enrolled_at, row.last_enroll_at, row.state_changed_at, row.state_changed_by,
                        row.token_issued_at, row.last_address, row.checkins, json.loads(row.metrics or "{}"),
                        keys, updates, history, device_history(row.id))


def update_history(device_id: str) -> list[HistoryEntry]:
    """The device's update history across releases and rollouts, oldest first."""
    return device_history(_row(device_id).id)


def metric_history(device_id: str, resolution: int = 3600, limit: int = 48) -> list[dict]:
    """The latest ``limit`` samples at ``resolution`` (0, 3600 or 86400 s):
    raw values, or ``{metric: {min, max, avg}}`` for rollups."""
    row = _row(device_id)
    out = []
    for ts, data in tuples(MetricSample.select(MetricSample.ts, MetricSample.data)
                           .where((MetricSample.device == row) & (MetricSample.resolution == resolution))
                           .order_by(MetricSample.ts.desc()).limit(limit)):
        values = json.loads(data)
        if resolution:
            values = {k: {"min": v[0], "max": v[1], "avg": v[2] / v[3]} for k, v in values.items()}
        out.append({"at": iso_from_unix(ts), "values": values})
    return out


def remove_device(settings: Settings, device_id: str, operator: str) -> RemovedDevice:
    """Take a device out of the inventory for good (a unit scrapped, or one
    that ``airlock-agent simulate`` made): its row and everything recorded
    about it (keys, tags, label, metrics, update reports, error and operator
    reports with their attachments).  Its token stops working at once; if
    it enrolls again it is a new, pending device.  What earlier exports
    carried stays in them, and the audit log keeps the removal with counts;
    export first if the vendor should see its reports.
    """
    from server.reports import services as reports  # the report side builds on this one

    with write_gate(database):
        with writing(database):
            row = _row(device_id)
            (updates,) = database.execute_sql("SELECT COUNT(*) FROM update_report WHERE device = ?",
                                              (row.id,)).fetchone()
            (samples,) = database.execute_sql("SELECT COUNT(*) FROM metric_sample WHERE device = ?",
                                              (row.id,)).fetchone()
            filed, blobs = reports.reports_of(row.id)
            Device.delete().where(Device.id == row.id).execute()  # the rest goes by ON DELETE CASCADE
            audit.record(operator, "device.remove", device_id, {
                "state": row.state, "hardware": row.hardware, "update_reports": updates, "reports": filed,
                "metric_samples": samples})
        # after the commit, still before any other writer could file a report naming these blobs
        deleted = reports.prune_blobs(settings, blobs)
    logger.warning("device %s removed from the inventory by %s (%d reports, %d update reports)",
                   device_id, operator, filed, updates)
    return RemovedDevice(device_id, row.state, updates, filed, samples, deleted)


def tag(device_id: str, tag_name: str, operator: str) -> bool:
    """Tag a device (a release for a group reaches devices with its tag)."""
    if not _TAG.fullmatch(tag_name or ""):
        raise InvalidRequestError(f"tag {tag_name!r} is not allowed: letters, digits, '.', '_', '-', at most 64")
    with writing(database):
        row = _row(device_id)
        try:
            with database.atomic():  # a savepoint: a duplicate leaves the transaction usable
                DeviceTag.insert(device=row.id, tag=tag_name).execute()
        except IntegrityError:
            return False
        audit.record(operator, "device.tag", device_id, {"tag": tag_name})
    return True


def untag(device_id: str, tag_name: str, operator: str) -> bool:
    with writing(database):
        row = _row(device_id)
        removed = DeviceTag.delete().where((DeviceTag.device == row.id) & (DeviceTag.tag == tag_name)).execute() > 0
        if removed:
            audit.record(operator, "device.untag", device_id, {"tag": tag_name})
    return removed
