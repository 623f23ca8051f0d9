"""Filing device and operator reports, their limits, snapshots and triage,
against a real SQLite file and real files on disk."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from server.devices import services as devices
from server.devices.exceptions import InvalidTokenError
from server.devices.records import Checkin
from server.reports import labels, services
from server.reports.exceptions import (
    ConflictError,
    InvalidRequestError,
    LabelRefusedError,
    NotFoundError,
    RateLimitedError,
    ReportTooLargeError,
    StorageFullError,
)
from server.reports.records import Attachment, DeviceReportIn, OperatorReportIn
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted
from tests.unit.server.reports.conftest import blob_files, counts


def crash(*attachments: Attachment, report_id: str | None = None, message: str = "segfault in modbus task"):
    return DeviceReportIn(report_id or str(uuid.uuid4()), "crash", "critical", message, "1.0.0",
                          occurred_at="2026-11-20T10:00:00Z", attachments=attachments)


def test_device_report_with_attachments_is_stored_content_addressed(settings, device, home):
    log = b"kernel: watchdog fired\n" * 10
    filed = services.file_device_report(settings, device, crash(Attachment("dmesg.txt", log),
                                                                Attachment("copy.txt", log)))
    assert not filed.duplicate
    detail = services.show_report(settings, filed.id)
    assert detail.summary.kind == "crash" and detail.summary.status == "new" and detail.firmware == "1.0.0"
    sha = hashlib.sha256(log).hexdigest()
    assert [(a.name, a.size, a.sha256) for a in detail.attachments] == [("dmesg.txt", 230, sha), ("copy.txt", 230, sha)]
    assert blob_files(home) == [sha]  # one blob for the same content
    assert (home / "reports" / "blobs" / sha[:2] / sha).read_bytes() == log
    assert detail.snapshot["firmware"] == "1.0.0" and detail.snapshot["state"] == "accepted"


def test_a_resend_is_a_duplicate_and_stores_nothing(settings, device, home):
    body = crash(Attachment("a.txt", b"x"))
    first = services.file_device_report(settings, device, body)
    before = counts(home)
    again = services.file_device_report(settings, device, body)
    assert again.id == first.id and again.duplicate and counts(home) == before
    upper = DeviceReportIn(body.report_id.upper(), body.kind, body.severity, body.message, body.firmware)
    assert services.file_device_report(settings, device, upper).duplicate


@pytest.mark.parametrize("attachments, error", [
    ((Attachment("big.bin", b"x" * 1001),), ReportTooLargeError),
    ((Attachment("a", b"x" * 600), Attachment("b", b"x" * 401)), ReportTooLargeError),
    (tuple(Attachment(f"f{i}", b"x") for i in range(5)), InvalidRequestError),
    ((Attachment("same", b"x"), Attachment("same", b"y")), InvalidRequestError),
])
def test_oversized_reports_store_nothing(settings, device, home, attachments, error):
    with pytest.raises(error):
        services.file_device_report(settings, device, crash(*attachments))
    assert counts(home)["report"] == 0 and blob_files(home) == []


def test_rate_limit_per_device(settings, device, home, db):
    now = int(time.time())
    sent = [crash() for _ in range(5)]
    for body in sent:
        services.file_device_report(settings, device, body, now=now)
    with pytest.raises(RateLimitedError) as refused:
        services.file_device_report(settings, device, crash(Attachment("a", b"x")), now=now + 10)
    assert refused.value.status == 429 and 3580 <= refused.value.retry_after <= 3600
    assert counts(home)["report"] == 5 and blob_files(home) == []
    # a resend from the spool is still recognised, so the device can drop it
    assert services.file_device_report(settings, device, sent[0], now=now + 10).duplicate
    # another device has its own allowance
    other = devices.authenticate(db, accepted(settings, SimDevice("plc-2")).token)
    assert not services.file_device_report(settings, other, crash(), now=now + 10).duplicate
    # an hour later the window has moved on
    assert not services.file_device_report(settings, device, crash(), now=now + 3601).duplicate


def test_storage_cap_per_device(settings, device, home):
    now = int(time.time())
    services.file_device_report(settings, device, crash(Attachment("a", b"1" * 1000)), now=now)
    services.file_device_report(settings, device, crash(Attachment("a", b"2" * 1000)), now=now)
    before = counts(home), blob_files(home)
    with pytest.raises(StorageFullError) as full:
        services.file_device_report(settings, device, crash(Attachment("a", b"3" * 501)), now=now)
    assert full.value.status == 507 and (counts(home), blob_files(home)) == before
    # a report without attachments still gets through
    assert not services.file_device_report(settings, device, crash(), now=now).duplicate


def test_a_revoked_token_files_nothing(settings, device, home):
    devices.decommission("plc-1", "tester")
    with pytest.raises(InvalidTokenError):
        services.file_device_report(settings, device, crash())
    assert counts(home)["report"] == 0


# operator reports through a label ----------------------------------------------------

@pytest.fixture
def label_key(settings, device):
    (label,) = labels.issue_labels(settings, ["plc-1"], "it")
    return label.url.rsplit("k=", 1)[1]


def test_operator_report_carries_a_snapshot(settings, device, db, label_key, home):
    devices.record_checkin(settings, db, device, Checkin("1.0.0", {"uptime_s": 50, "cpu_temp_c": 91.0,
                                                                    "error_counters": {"crc": 2}}))
    problem = OperatorReportIn("Display flickers\r\nand the fan is loud", "error", "  Badge 4711  ")
    filed = services.file_operator_report(settings, "plc-1", label_key, problem)
    d = services.show_report(settings, filed.id)
    assert (d.summary.source, d.summary.kind, d.summary.severity) == ("operator", "operator", "error")
    assert d.summary.message == "Display flickers\nand the fan is loud" and d.reporter == "Badge 4711"
    snap = d.snapshot
    assert snap["firmware"] == "1.0.0" and snap["online"] is True and "hot" in snap["health"]
    assert snap["metrics"]["cpu_temp_c"] == 91.0 and snap["last_checkin"]
    assert snap["recent_metrics"][0]["values"]["uptime_s"] == 50
    assert snap["last_update"] is None


@pytest.mark.parametrize("device_id, key", [("plc-1", None), ("plc-1", ""), ("plc-1", "wrong-key"),
                                            ("nobody", "KEY"), ("plc-1", "x" * 500)])
def test_wrong_or_missing_label_key_is_refused(settings, label_key, home, device_id, key):
    key = label_key if key == "KEY" else key
    with pytest.raises(LabelRefusedError) as refused:
        services.file_operator_report(settings, device_id, key, OperatorReportIn("broken", "info", "Ann"))
    assert refused.value.status == 404 and counts(home)["report"] == 0


def test_a_new_label_replaces_the_old_one(settings, label_key):
    (new,) = labels.issue_labels(settings, ["plc-1"], "it")
    with pytest.raises(LabelRefusedError):
        services.label_device("plc-1", label_key)
    services.label_device("plc-1", new.url.rsplit("k=", 1)[1])


def test_a_decommissioned_device_takes_no_reports(settings, label_key):
    devices.decommission("plc-1", "tester")
    with pytest.raises(LabelRefusedError):
        services.file_operator_report(settings, "plc-1", label_key, OperatorReportIn("gone", "info", "Ann"))


@pytest.mark.parametrize("problem, urgency, reporter", [
    ("", "info", "Ann"), ("   ", "info", "Ann"), ("x" * 2001, "info", "Ann"), ("bell\x07", "info", "Ann"),
    ("csi \x9b31m", "info", "Ann"), ("ok", "panic", "Ann"), ("ok", "info", ""), ("ok", "info", "Ann\nBob"),
    ("ok", "info", "A" * 101),
])
def test_operator_input_is_bounded(settings, label_key, home, problem, urgency, reporter):
    with pytest.raises(InvalidRequestError):
        services.file_operator_report(settings, "plc-1", label_key, OperatorReportIn(problem, urgency, reporter))
    assert counts(home)["report"] == 0


def test_operator_rate_limit_per_label(settings, label_key, home):
    now = int(time.time())
    for i in range(3):
        services.file_operator_report(settings, "plc-1", label_key, OperatorReportIn(f"p{i}", "info", "Ann"), now=now)
    with pytest.raises(RateLimitedError):
        services.file_operator_report(settings, "plc-1", label_key, OperatorReportIn("p", "info", "Ann"), now=now)
    assert counts(home)["report"] == 3


# triage ------------------------------------------------------------------------------

def test_triage_new_acknowledged_resolved_with_notes(settings, device):
    a = services.file_device_report(settings, device, crash()).id
    b = services.file_device_report(settings, device, crash(message="second")).id
    assert [r.id for r in services.list_reports()] == [b, a]
    assert services.acknowledge(a, "ann", "looking").status == "acknowledged"
    with pytest.raises(ConflictError):
        services.acknowledge(a, "ann")
    services.add_note(a, "bob", "vendor asked for the core dump")
    assert services.resolve(a, "bob", "fixed in 1.0.1").status == "resolved"
    with pytest.raises(ConflictError):
        services.resolve(a, "bob")
    assert services.resolve(b, "bob").status == "resolved"  # straight from new
    d = services.show_report(settings, a)
    assert [(n.action, n.author, n.text) for n in d.notes] == [
        ("acknowledged", "ann", "looking"), ("note", "bob", "vendor asked for the core dump"),
        ("resolved", "bob", "fixed in 1.0.1")]
    assert d.status_changed_by == "bob" and d.status_changed_at
    assert [r.id for r in services.list_reports(status="resolved", device_id="plc-1")] == [b, a]
    assert services.list_reports(status="new") == [] and services.list_reports(device_id="other") == []
    with pytest.raises(InvalidRequestError):
        services.list_reports(status="open")
    with pytest.raises(InvalidRequestError):
        services.add_note(a, "bob", "  ")
    with pytest.raises(NotFoundError):
        services.acknowledge(999, "ann")


def test_a_resubmitted_form_files_once(settings, label_key, home):
    now = int(time.time())
    entered = OperatorReportIn("Pump 2 leaks", "error", "Ann")
    first = services.file_operator_report(settings, "plc-1", label_key, entered, now=now)
    again = services.file_operator_report(settings, "plc-1", label_key, entered, now=now + 30)
    assert again.id == first.id and again.duplicate and counts(home)["report"] == 1
    later = services.file_operator_report(settings, "plc-1", label_key, entered, now=now + services.RESUBMIT_WINDOW + 1)
    assert not later.duplicate
    by_bob = OperatorReportIn("Pump 2 leaks", "error", "Bob")
    other = services.file_operator_report(settings, "plc-1", label_key, by_bob, now=now + 30)
    assert not other.duplicate
