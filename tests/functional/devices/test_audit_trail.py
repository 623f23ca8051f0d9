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

from server import create_app
from server.settings import load_settings
from tests.conftest import run_airlock
from tests.functional.devices.client import SimDevice

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
    assert details["device.auto_accept"]["hardware"] == "plc-x" and len(details["device.auto_accept"]["key_sha256"]) == 64
    assert details["device.tag"] == {"tag": "pilot"}
    assert details["report.acknowledged"] == {"from": "new", "note": True}
    assert details["report.resolved"] == {"from": "acknowledged", "note": False}
    raw = (home / "airlock.db").read_bytes()
    log = json.dumps(entries)
    for secret in (TOKEN, PASSWORD, dev.token):
        assert secret not in log
    assert b"aud-1" in raw  # the search above looked at real content
    assert airlock("audit", "verify").out.startswith(f"{len(entries)} records, chain intact")
