"""A halt and unverified firmware are visible where plant IT and the vendor
look: `airlock status`, `/metrics`, the next export."""

from __future__ import annotations

import json

from server import create_app
from server.alerts import services as alerts
from server.rollouts import services as rollouts
from tests.functional.devices.client import SimDevice
from tests.functional.export.test_export import jsonl, members
from tests.unit.server.rollouts.conftest import accepted
from tests.unit.server.rollouts.test_rollouts import approve, checkin, install


def test_a_halt_shows_in_status_metrics_and_the_export(airlock, settings, db, repo, tmp_path):
    devices = [accepted(settings, SimDevice(f"vis-{i}")) for i in range(4)]
    release, r = approve(settings, ["100%"])
    for dev in devices[:2]:
        assert checkin(settings, db, dev).update is not None
        install(settings, db, dev, release.id, "2.0.0", ok=False)
    flashed = devices[3]
    checkin(settings, db, flashed, firmware="7.7.7")  # from a service laptop
    [verdict] = rollouts.evaluate(settings)
    assert verdict.action == "halt"
    opened = {(a.kind, a.subject): a for a in alerts.list_alerts()}
    assert opened[("rollout_halted", f"rollout:{r.id}")].detail == verdict.reason
    assert ("unverified_firmware", "device:vis-3") in opened

    status = airlock("status")
    assert status.code == 0, status.err
    assert "rollouts  1 halted" in status.out and f"rollout {r.id} of release {release.id} (2.0.0) halted: wave 1: " \
        in status.out and "1 with unverified firmware" in status.out
    served = json.loads(airlock("status", "--json").out)["served"]
    assert served["rollouts"]["halted"] == 1 and served["unverified_firmware"] == 1
    assert served["halted"][0]["what"].endswith(verdict.reason)

    text = create_app(settings).test_client().get("/metrics").get_data(as_text=True)
    assert 'airlock_rollouts{state="halted"} 1' in text and 'airlock_rollouts{state="running"} 0' in text
    assert "airlock_devices_unverified_firmware 1" in text

    assert airlock("export", tmp_path / "usb").code == 0
    [path] = (tmp_path / "usb").rglob("*.tar")
    files = members(path)
    [exported] = jsonl(files["rollouts.jsonl"])
    assert exported["state"] == "halted" and exported["halt_reason"] == verdict.reason
    assert exported["waves"][0]["percent"] == 100.0 and exported["waves"][0]["size"] == 4
    offers = jsonl(files["update_offers.jsonl"])
    assert sorted((o["device"], o["rollout"], o["wave"], o["outcome"]) for o in offers) == [
        ("vis-0", r.id, 1, "failure"), ("vis-1", r.id, 1, "failure")]
    [event] = jsonl(files["firmware_events.jsonl"])
    assert (event["device"], event["previous"], event["version"], event["kind"]) == (
        "vis-3", "1.0.0", "7.7.7", "installed_outside")


def test_the_halt_alert_ends_when_plant_it_resumes_or_aborts(settings, db, repo):
    devices = [accepted(settings, SimDevice(f"end-{i}")) for i in range(2)]
    release, r = approve(settings, ["100%"])
    for dev in devices:
        assert checkin(settings, db, dev).update is not None
        install(settings, db, dev, release.id, "2.0.0", ok=False)
    assert [v.action for v in rollouts.evaluate(settings)] == ["halt"]
    subject = f"rollout:{r.id}"
    assert [a.subject for a in alerts.list_alerts(kind="rollout_halted")] == [subject]
    rollouts.resume(r.id, "it")
    assert alerts.list_alerts(kind="rollout_halted") == []
    [closed] = alerts.list_alerts(kind="rollout_halted", include_closed=True)
    assert closed.close_reason == "resumed by it"
