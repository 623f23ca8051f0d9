"""Every action that changes who may do what, or what reaches a device, is in
the audit log with who did it: the first admin, auto-acceptance rules and
the devices they let in, tags (which steer group releases), QR labels (a new
one voids the old), and report triage.  Driven through the real CLI and the
real device API (the Flask app in-process), then checked with `audit list`
and `audit verify`; the log must hold no secret."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from server import create_app
from server.settings import load_settings
from tests.conftest import run_airlock
from tests.functional.devices.client import SimDevice
from tests.support import homedb

TOKEN = "Audit-Trail-Enrollment-Token-4f2a9c"
PASSWORD = "Audit-Trail-Password-1b7e"


def test_the_audit_log_names_who_did_each_action(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "ines")  # the operator the CLI records
    home = tmp_path / "home"
    (tmp_path / "pw").write_text(PASSWORD)
    assert run_airlock(home, "init", "--admin", "admin-1", "--password-file", tmp_path / "pw").code == 0

    def airlock(*args):
        r = run_airlock(home, *args)
        assert r.code == 0, (args, r.err)
        return r

    (tmp_path / "token").write_text(TOKEN)
    airlock("devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", tmp_path / "token",
            "--note", "batch 7")
    client = create_app(load_settings(home)).test_client()
    dev = SimDevice("aud-1")
    r = client.post("/api/v1/enroll", json=dev.enrollment(enrollment_token=TOKEN))
    assert r.status_code == 200, r.get_data(as_text=True)
    dev.token = r.get_json()["token"]
    later = SimDevice("aud-2")  # pending first, then let in by the rule on its next enrollment
    assert client.post("/api/v1/enroll", json=later.enrollment()).status_code == 202
    assert client.post("/api/v1/enroll", json=later.enrollment(enrollment_token=TOKEN)).status_code == 200
    airlock("devices", "auto-accept", "remove", "1")
    airlock("devices", "tag", "aud-1", "pilot")
    airlock("devices", "tag", "aud-1", "pilot")  # already tagged: nothing changes, nothing recorded
    airlock("devices", "untag", "aud-1", "pilot")
    airlock("devices", "labels", "--out", tmp_path / "labels.svg", "aud-1")
    report = {"report_id": str(uuid.uuid4()), "kind": "error", "severity": "warning", "message": "flash slow",
              "firmware": "1.0.0", "attachments": [{"name": "log.txt", "content": base64.b64encode(b"x").decode()}]}
    r = client.post("/api/v1/reports", json=report, headers=dev.auth())
    assert r.status_code == 201, r.get_data(as_text=True)
    report_pk = json.loads(airlock("reports", "list", "--json").out)[0]["id"]
    airlock("reports", "ack", str(report_pk), "--note", "looking")
    airlock("reports", "note", str(report_pk), "vendor asked for the log")
    airlock("reports", "resolve", str(report_pk))

    entries = [json.loads(line) for line in airlock("audit", "list", "--json").out.splitlines()]
    seen = [(e["actor"], e["action"], e["subject"]) for e in entries]
    assert seen == [
        ("ines", "user.create", "admin-1"),
        ("ines", "device.auto_accept_rule.add", "rule 1"),
        ("rule 1", "device.auto_accept", "aud-1"),
        ("rule 1", "device.auto_accept", "aud-2"),
        ("ines", "device.auto_accept_rule.remove", "rule 1"),
        ("ines", "device.tag", "aud-1"),
        ("ines", "device.untag", "aud-1"),
        ("ines", "device.label", "aud-1"),
        ("ines", "report.acknowledged", f"report {report_pk}"),
        ("ines", "report.note", f"report {report_pk}"),
        ("ines", "report.resolved", f"report {report_pk}"),
    ], seen
    details = {e["action"]: e["details"] for e in entries}
    assert details["device.auto_accept_rule.add"] == {"hardware": "plc-x", "note": "batch 7"}
    auto_accept = details["device.auto_accept"]
    assert auto_accept["hardware"] == "plc-x" and len(auto_accept["key_sha256"]) == 64
    assert details["device.tag"] == {"tag": "pilot"}
    assert details["report.acknowledged"] == {"from": "new", "note": True}
    assert details["report.resolved"] == {"from": "acknowledged", "note": False}
    raw = homedb.database_bytes(home / "airlock.db")
    log = json.dumps(entries)
    for secret in (TOKEN, PASSWORD, dev.token):
        assert secret not in log
    assert b"aud-1" in raw  # the search above looked at real content
    assert airlock("audit", "verify").out.startswith(f"{len(entries)} records, chain intact")


def test_reopening_a_report_and_removing_a_device_are_audited(tmp_path, monkeypatch):
    """Defect 14: `reports reopen` and `devices remove`, through the real CLI
    and the real API, each audited with actor, action and subject."""
    monkeypatch.setenv("SUDO_USER", "ines")
    home = tmp_path / "home"
    assert run_airlock(home, "init").code == 0

    def airlock(*args):
        r = run_airlock(home, *args)
        assert r.code == 0, (args, r.err)
        return r

    client = create_app(load_settings(home)).test_client()
    sims = []
    for device_id in ("sim-1", "sim-2"):
        dev = SimDevice(device_id)
        assert client.post("/api/v1/enroll", json=dev.enrollment()).status_code == 202
        airlock("devices", "accept", device_id)
        dev.token = client.post("/api/v1/enroll", json=dev.enrollment()).get_json()["token"]
        assert client.post("/api/v1/checkin", json={"firmware": "1.0.0", "metrics": {"uptime_s": 5}},
                           headers=dev.auth()).status_code == 200
        sims.append(dev)
    gone, kept = sims
    own, shared = base64.b64encode(b"sim-1 core").decode(), base64.b64encode(b"both logs").decode()
    for dev, attachments in ((gone, [("core.bin", own), ("log.txt", shared)]), (kept, [("log.txt", shared)])):
        report = {"report_id": str(uuid.uuid4()), "kind": "crash", "severity": "error", "message": "fault",
                  "firmware": "1.0.0", "attachments": [{"name": n, "content": c} for n, c in attachments]}
        assert client.post("/api/v1/reports", json=report, headers=dev.auth()).status_code == 201
    first = json.loads(airlock("reports", "list", "--json", "--device", "sim-1").out)[0]["id"]
    blobs = {a["name"]: a["path"] for a in json.loads(airlock("reports", "show", str(first), "--json").out)
             ["attachments"]}

    # reopen: only a resolved report, back to new, with a note
    refused = run_airlock(home, "reports", "reopen", str(first))
    assert refused.code == 1 and refused.err.startswith("airlock: error: report") and "resolved" in refused.err
    airlock("reports", "resolve", str(first), "--note", "reflashed")
    assert airlock("reports", "reopen", str(first), "--note", "crashed again").out.startswith(
        f"report {first} reopened")
    shown = json.loads(airlock("reports", "show", str(first), "--json").out)
    assert shown["summary"]["status"] == "new"
    assert [(n["action"], n["text"]) for n in shown["notes"]][-1] == ("reopened", "crashed again")

    # remove: the device, its token, its records and its own attachments go; others stay
    out = airlock("devices", "remove", "sim-1").out
    assert out.startswith("removed sim-1 (it was accepted) with 1 reports, 0 update reports and 1 metric samples")
    r = client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers=gone.auth())
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_token"
    assert client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers=kept.auth()).status_code == 200
    assert [d["device_id"] for d in json.loads(airlock("devices", "list", "--json").out)] == ["sim-2"]
    assert json.loads(airlock("reports", "list", "--json", "--device", "sim-1").out) == []
    assert len(json.loads(airlock("reports", "list", "--json").out)) == 1
    assert not Path(blobs["core.bin"]).exists() and Path(blobs["log.txt"]).exists()  # still sim-2's
    missing = run_airlock(home, "devices", "remove", "sim-1")
    assert missing.code == 1 and missing.err.startswith("airlock: error: no device 'sim-1'")
    # it may enroll again, as a new device that waits for IT
    assert client.post("/api/v1/enroll", json=gone.enrollment()).status_code == 202

    entries = [json.loads(line) for line in airlock("audit", "list", "--json").out.splitlines()]
    seen = [(e["actor"], e["action"], e["subject"]) for e in entries]
    assert seen[-3:] == [("ines", "report.resolved", f"report {first}"),
                         ("ines", "report.reopened", f"report {first}"),
                         ("ines", "device.remove", "sim-1")], seen
    assert entries[-2]["details"] == {"from": "resolved", "note": True}
    assert entries[-1]["details"] == {"state": "accepted", "hardware": "plc-x", "update_reports": 0, "reports": 1,
                                      "metric_samples": 1}
    assert airlock("audit", "verify").out.startswith(f"{len(entries)} records, chain intact")
