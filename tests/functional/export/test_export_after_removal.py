"""Rows made after `airlock devices remove` are exported: removing a device
deletes its newest reports and update reports, and their ids must never be
handed out again (exports select each data set by id range), or the next
export would skip what came after."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path

from tests.conftest import run_airlock
from tests.functional.devices.client import SimDevice, utc_now

TOKEN = "removal-test-enrollment-token"


def _exported(home: Path, usb: Path) -> dict[str, list[dict]]:
    usb.mkdir(exist_ok=True)
    r = run_airlock(home, "export", usb)
    assert r.code == 0, r.err
    newest = max(usb.glob("*.tar*"), key=lambda p: p.stat().st_mtime_ns)
    with tarfile.open(newest) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    return {name: [json.loads(line) for line in files[name].splitlines()]
            for name in ("reports.jsonl", "report_notes.jsonl")}


def _report(client, dev: SimDevice, message: str) -> int:
    body = {"report_id": str(uuid.uuid4()), "kind": "error", "severity": "error", "message": message,
            "firmware": "1.0.0", "occurred_at": utc_now()}
    r = client.post("/api/v1/reports", json=body, headers=dev.auth())
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()["id"]


def _enroll(client, name: str) -> SimDevice:
    dev = SimDevice(name)
    r = client.post("/api/v1/enroll", json=dev.enrollment(enrollment_token=TOKEN))
    assert r.status_code == 200, r.get_data(as_text=True)
    dev.token = r.get_json()["token"]
    return dev


def test_reports_filed_after_a_device_is_removed_reach_the_next_export(tmp_path):
    from server import create_app
    from server.settings import load_settings

    home = tmp_path / "home"
    assert run_airlock(home, "init").code == 0
    (tmp_path / "token").write_text(TOKEN)
    assert run_airlock(home, "devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file",
                       tmp_path / "token").code == 0
    client = create_app(load_settings(home)).test_client()
    gone = _enroll(client, "to-be-removed")
    old = [_report(client, gone, f"old {n}") for n in range(3)]
    assert run_airlock(home, "reports", "ack", str(old[-1])).code == 0
    first = _exported(home, tmp_path / "usb")
    assert sorted(r["message"] for r in first["reports.jsonl"]) == ["old 0", "old 1", "old 2"]
    assert len(first["report_notes.jsonl"]) == 1

    assert run_airlock(home, "devices", "remove", "to-be-removed").code == 0
    newcomer = _enroll(client, "newcomer")
    new = [_report(client, newcomer, f"new {n}") for n in range(2)]
    assert run_airlock(home, "reports", "ack", str(new[-1])).code == 0
    assert min(new) > max(old), f"report ids {new} reuse ids {old} that an export already covered"

    second = _exported(home, tmp_path / "usb")
    assert sorted(r["message"] for r in second["reports.jsonl"]) == ["new 0", "new 1"]
    assert len(second["report_notes.jsonl"]) == 1
