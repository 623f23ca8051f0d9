"""Alerts over a real appliance home: check-ins open and close a device's
reboot-loop and rising-errors alerts and close its offline alert; a failed
update opens one that a success closes; the sweep finds silent devices and
expiring metadata; `airlock alerts` lists them, `/metrics` counts them, the
log has one escaped line, an export carries them."""

from __future__ import annotations

import json
import logging
import tarfile
from dataclasses import replace
from datetime import timedelta

import pytest

from server import create_app
from server.alerts import services as alerts
from server.alerts.sweep import sweep
from server.clock import utcnow
from server.devices import services
from server.devices.exceptions import InvalidRequestError
from server.devices.records import Checkin, UpdateReportIn
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted
from tests.unit.server.devices.test_releases import repo  # noqa: F401 - the fixture


def checkin(settings, db, dev, **metrics):
    device = services.authenticate(db, dev.token)
    return services.record_checkin(settings, db, device, Checkin(dev.firmware, metrics))


def open_kinds(subject: str) -> set[str]:
    return {a.kind for a in alerts.list_alerts() if a.subject == subject}


def test_checkins_open_and_close_their_own_devices_alerts(settings, db, caplog):
    dev = accepted(settings, SimDevice("d-a1"))
    subject = "device:d-a1"
    checkin(settings, db, dev, boot_count=1, error_counters={"crc": 1})
    assert open_kinds(subject) == set()
    checkin(settings, db, dev, boot_count=9, error_counters={"crc": 5})  # 8 reboots, errors rising
    assert open_kinds(subject) == {"reboot_loop", "errors_rising"}
    checkin(settings, db, dev, boot_count=9, error_counters={"crc": 5})  # still rebooting often, errors steady
    assert open_kinds(subject) == {"reboot_loop"}
    assert len([a for a in alerts.list_alerts(include_closed=True) if a.kind == "reboot_loop"]) == 1  # one, not two
    closed = alerts.list_alerts(include_closed=True, kind="errors_rising")[0]
    assert closed.closed_at and closed.close_reason == "no longer reported"
    assert any("alert opened: kind=reboot_loop subject=device:d-a1" in r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING)


def test_a_failed_update_opens_an_alert_and_a_success_closes_it(settings, db, repo, caplog):  # noqa: F811
    dev = accepted(settings, SimDevice("d-a2"))
    release = services.approve(settings, repo, "plc-x/fw-2.0.0.bin", "it", hardware="plc-x")
    device = services.authenticate(db, dev.token)
    services.record_report(device, UpdateReportIn("0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e60", release.id, "failure",
                                                  "2026-11-01T10:00:00Z", "hash mismatch\x1b[31m"))
    [alert] = alerts.list_alerts(kind="update_failed")
    assert alert.subject == "device:d-a2" and alert.detail.startswith(f"release {release.id}: hash mismatch")
    [line] = [r.getMessage() for r in caplog.records if "alert opened: kind=update_failed" in r.getMessage()]
    assert "\x1b" not in line and "\n" not in line  # the device's text, escaped
    services.record_report(device, UpdateReportIn("0b6f0a2e-8d1c-4f0e-9b7a-2b1a3c4d5e61", release.id, "success",
                                                  "2026-11-01T11:00:00Z"))
    assert alerts.list_alerts(kind="update_failed") == []
    assert alerts.list_alerts(include_closed=True, kind="update_failed")[0].close_reason.startswith("release")


def test_the_sweep_opens_offline_alerts_that_a_checkin_closes(settings, db):
    dev = accepted(settings, SimDevice("d-a3"))
    quiet = accepted(settings, SimDevice("d-a4"))
    checkin(settings, db, dev)
    checkin(settings, db, quiet)
    assert sweep(settings).opened == 0
    later = utcnow() + timedelta(seconds=3 * settings.checkin_interval + 60)
    result = sweep(settings, later)
    assert result.opened == 2 and open_kinds("device:d-a3") == {"device_offline"}
    assert sweep(settings, later).opened == 0  # already open: nothing new
    checkin(settings, db, dev)
    assert open_kinds("device:d-a3") == set() and open_kinds("device:d-a4") == {"device_offline"}
    services.decommission("d-a4", "it")
    assert sweep(settings).closed == 1 and alerts.list_alerts() == []


def test_the_sweep_closes_an_offline_alert_its_check_in_raced(settings, db):
    """A sweep that read a device as silent and opened its offline alert
    just after the device's check-in read its alerts: the next sweep sees
    the device checked in since and closes the alert; a device that has not
    checked in keeps its own."""
    dev = accepted(settings, SimDevice("d-a5"))
    accepted(settings, SimDevice("d-a6"))  # never checks in
    alerts.open_alert("device_offline", "device:d-a6", "silent")
    checkin(settings, db, dev)  # d-a5 checks in; the racing sweep's alert lands after it read its alerts:
    alerts.open_alert("device_offline", "device:d-a5", "last check-in long ago")
    assert open_kinds("device:d-a5") == {"device_offline"}
    assert sweep(settings).closed == 1
    assert open_kinds("device:d-a5") == set() and open_kinds("device:d-a6") == {"device_offline"}
    [closed] = [a for a in alerts.list_alerts(include_closed=True, kind="device_offline") if a.closed_at]
    assert closed.subject == "device:d-a5" and closed.close_reason == "checked in again"


def test_the_sweep_warns_of_metadata_about_to_expire(settings, db, repo):  # noqa: F811
    day = replace(settings, alert_metadata_expiry_warning=86400)  # the simulator's timestamp lasts 7 days
    assert sweep(day).opened == 0
    assert sweep(day, utcnow() + timedelta(days=6, hours=12)).opened == 1
    [alert] = alerts.list_alerts(kind="metadata_expiring")
    assert alert.subject == "repository:acme" and "timestamp metadata expires at" in alert.detail
    assert "import a bundle" in alert.detail
    assert sweep(day).closed == 1  # back to now: fresh again
    assert sweep(day, utcnow() + timedelta(days=8)).opened == 1
    assert "expired at" in alerts.list_alerts(kind="metadata_expiring")[0].detail


def test_other_services_open_and_close_alerts_by_kind(settings, db):
    assert alerts.open_alert("rollout_halted", "rollout:3", "wave 1: 4 of 10 failed") is True
    assert alerts.open_alert("rollout_halted", "rollout:3", "again") is False
    assert alerts.close_alert("rollout_halted", "rollout:3", "aborted") is True
    assert alerts.close_alert("rollout_halted", "rollout:3") is False
    with pytest.raises(InvalidRequestError, match="unknown alert kind"):
        alerts.open_alert("bad_mood", "device:x")


def test_cli_metrics_api_and_export_show_alerts(settings, db, airlock, home, tmp_path):
    alerts.open_alert("rollout_halted", "rollout:7", "wave 2 failed")
    alerts.open_alert("update_failed", "device:d-9", "release 1: nope")
    alerts.close_alert("update_failed", "device:d-9")
    r = airlock("alerts")
    assert r.code == 0 and "rollout_halted" in r.out and "update_failed" not in r.out
    listed = json.loads(airlock("alerts", "--all", "--json").out)
    assert [(a["kind"], a["open"]) for a in listed] == [("update_failed", False), ("rollout_halted", True)]
    bad = airlock("alerts", "--kind", "nope")
    assert bad.code != 0 and "unknown alert kind" in bad.err
    assert airlock("alerts", "sweep").out.strip() == "alerts: 0 opened, 0 closed"
    client = create_app(settings).test_client()
    text = client.get("/metrics").text
    assert 'airlock_alerts_open{kind="rollout_halted"} 1' in text
    assert 'airlock_alerts_open{kind="update_failed"} 0' in text
    assert 'airlock_alerts_opened_total{kind="update_failed"} 1' in text
    assert client.get("/api/v1/admin/alerts").status_code == 401  # credentials needed
    out = tmp_path / "usb"
    out.mkdir()
    r = airlock("export", str(out))
    assert r.code == 0, r.err
    [made] = list(out.iterdir())
    with tarfile.open(made) as tar:
        exported = [json.loads(line) for line in tar.extractfile("alerts.jsonl").read().splitlines()]
    assert [(a["kind"], a["subject"], a["closed_at"] is None) for a in exported] == [
        ("rollout_halted", "rollout:7", True), ("update_failed", "device:d-9", False)]
