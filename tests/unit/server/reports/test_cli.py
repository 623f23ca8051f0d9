"""`airlock reports ...` and `airlock devices labels`, run in-process.
Report text is data: terminal control characters come out escaped."""

from __future__ import annotations

import json
import uuid

from server.reports import services
from server.reports.records import Attachment, DeviceReportIn, OperatorReportIn

NASTY = "boom \x1b[2J\x1b]0;pwned\x07 done\nline two \x9b31m"


def test_triage_from_the_cli(airlock, settings, device):
    body = DeviceReportIn(str(uuid.uuid4()), "watchdog_reset", "error", NASTY, "1.0.0",
                          attachments=(Attachment("log.txt", b"\x1b[31m"),))
    rid = services.file_device_report(settings, device, body).id
    listed = airlock("reports", "list")
    assert listed.code == 0 and "\x1b" not in listed.out and "\x9b" not in listed.out
    assert listed.out.splitlines()[1].split()[:7] == [str(rid), listed.out.split()[9], "plc-1", "device",
                                                      "watchdog_reset", "error", "new"]
    shown = airlock("reports", "show", str(rid))
    assert shown.code == 0 and "\x1b" not in shown.out and "\x07" not in shown.out and "\x9b" not in shown.out
    assert r"boom \x1b[2J\x1b]0;pwned\x07 done" in shown.out and r"line two \x9b31m" in shown.out
    assert "log.txt  5 bytes" in shown.out
    as_json = json.loads(airlock("reports", "show", str(rid), "--json").out)
    assert as_json["summary"]["message"] == NASTY and as_json["attachments"][0]["size"] == 5
    assert "\x1b" not in airlock("reports", "show", str(rid), "--json").out  # JSON escapes it too

    refused = airlock("reports", "ack", str(rid), "--note", "on it \x1b[5m")
    assert refused.code == 1 and "control characters" in refused.err
    assert json.loads(airlock("reports", "show", str(rid), "--json").out)["summary"]["status"] == "new"
    assert airlock("reports", "ack", str(rid), "--note", "on it <b>").code == 0
    again = airlock("reports", "ack", str(rid))
    assert again.code == 1 and again.err.startswith("airlock: error: report") and "acknowledged" in again.err
    assert airlock("reports", "note", str(rid), "asked vendor").code == 0
    assert airlock("reports", "resolve", str(rid), "--note", "fixed").code == 0
    notes = json.loads(airlock("reports", "show", str(rid), "--json").out)["notes"]
    assert [n["action"] for n in notes] == ["acknowledged", "note", "resolved"]
    assert "on it <b>" in airlock("reports", "show", str(rid)).out
    assert [r["id"] for r in json.loads(airlock("reports", "list", "--json", "--status", "resolved").out)] == [rid]
    assert "no reports in status new" in airlock("reports", "list", "--status", "new").out
    assert airlock("reports", "show", "999").code == 1
    assert airlock("reports", "list", "--status", "open").code != 0


def test_labels_command(airlock, settings, device, tmp_path):
    out = tmp_path / "labels.svg"
    r = airlock("devices", "labels", "--out", out)
    assert r.code == 0, r.err
    sheet = out.read_text()
    assert sheet.startswith("<?xml") and "/report/plc-1?k=" in sheet and 'class="segno"' in sheet
    assert "plc-1" in r.err
    again = airlock("devices", "labels")
    assert again.code == 1 and "no device needs a label" in again.err
    exists = airlock("devices", "labels", "plc-1", "--out", out)
    assert exists.code == 1 and out.read_text() == sheet  # never overwritten
    stdout = airlock("devices", "labels", "plc-1")
    assert stdout.code == 0 and stdout.out.startswith("<?xml")
    key = stdout.out.split("?k=")[1].split('"')[0]
    services.file_operator_report(settings, "plc-1", key, OperatorReportIn("<b>hot</b>", "warning", "Ann"))
    assert "<b>hot</b>" in airlock("reports", "list", "--device", "plc-1").out
    assert airlock("devices", "labels", "--format", "pdf").code != 0
