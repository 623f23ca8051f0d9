"""`POST /api/v1/reports` against a real `airlock serve`: real tokens, real
HTTP, attachments on a real file system; every answer is checked against
the OpenAPI document the appliance serves."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import pytest

from tests.functional.devices.client import utc_now
from tests.support import homedb


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_report(**override) -> dict:
    body = {"report_id": str(uuid.uuid4()), "kind": "crash", "severity": "critical",
            "message": "hard fault in task modbus\nPC=0x0800_1234", "firmware": "1.0.0", "occurred_at": utc_now()}
    body.update(override)
    return body


def test_a_report_with_attachments_and_its_resend(appliance):
    dev, api = appliance.enroll("rep-1"), appliance.client()
    core = bytes(range(256)) * 8
    body = error_report(attachments=[{"name": "dmesg.txt", "content": b64(b"watchdog: BUG\n")},
                                     {"name": "core.bin", "content": b64(core)}])
    r = api.post("/api/v1/reports", body, dev.auth())
    assert r.status == 201 and r.json["status"] == "recorded" and r.json["duplicate"] is False
    number = r.json["id"]
    shown = json.loads(appliance.airlock("reports", "show", str(number), "--json").out)
    assert shown["summary"]["device_id"] == "rep-1" and shown["summary"]["message"] == body["message"]
    assert shown["report_id"] == body["report_id"] and shown["occurred_at"] == body["occurred_at"]
    files = {a["name"]: a for a in shown["attachments"]}
    assert open(files["core.bin"]["path"], "rb").read() == core  # noqa: SIM115
    assert files["core.bin"]["sha256"] == hashlib.sha256(core).hexdigest()
    assert appliance.rows("SELECT COUNT(*) FROM report WHERE message LIKE '%modbus%'")[0][0] == 1
    # not in the database: it holds only names, sizes and hashes
    assert core[:64].decode("latin-1") not in homedb.all_text(appliance.home)

    before = appliance.stored()
    again = api.post("/api/v1/reports", body, dev.auth())
    assert again.status == 200 and again.json == {"status": "recorded", "id": number, "duplicate": True}
    assert appliance.stored() == before


@pytest.mark.parametrize("body, status, code", [
    (error_report(kind="meltdown"), 400, "invalid_request"),
    (error_report(message=""), 400, "invalid_request"),
    (error_report(message="x" * 4001), 400, "invalid_request"),
    (error_report(message="colour \x1b[31m"), 400, "invalid_request"),
    (error_report(report_id="not-a-uuid"), 400, "invalid_request"),
    (error_report(extra=1), 400, "invalid_request"),
    (error_report(attachments=[{"name": "a.txt", "content": "!!notbase64!!"}]), 400, "invalid_request"),
    (error_report(attachments=[{"name": "../etc/passwd", "content": ""}]), 400, "invalid_request"),
    (error_report(attachments=[{"name": f"f{i}", "content": "eA=="} for i in range(5)]), 400, "invalid_request"),
    (error_report(attachments=[{"name": "big", "content": b64(b"x" * 4097)}]), 413, "too_large"),
    (error_report(attachments=[{"name": "a", "content": b64(b"x" * 3000)},
                               {"name": "b", "content": b64(b"x" * 1100)}]), 413, "too_large"),
    (error_report(message="y" * 4000, attachments=[{"name": "huge", "content": "QUFB" * 20000}]), 413, "too_large"),
])
def test_malformed_or_oversized_reports_store_nothing(appliance, body, status, code):
    dev, api = appliance.enroll(f"bad-{uuid.uuid4().hex[:8]}"), appliance.client()
    before = appliance.stored()
    r = api.post("/api/v1/reports", body, dev.auth())
    assert (r.status, r.json["error"]) == (status, code), r.body
    assert appliance.stored() == before


def test_credentials_and_media_type(appliance):
    dev, api = appliance.enroll("rep-auth"), appliance.client()
    before = appliance.stored()
    assert api.post("/api/v1/reports", error_report()).status == 401
    assert api.post("/api/v1/reports", error_report(), {"Authorization": "Bearer " + "x" * 43}).status == 401
    r = api.post("/api/v1/reports", raw=b"kind=crash", headers=dev.auth(), content_type="text/plain")
    assert r.status == 415
    assert appliance.airlock("devices", "decommission", "rep-auth").code == 0
    assert api.post("/api/v1/reports", error_report(), dev.auth()).status == 401
    assert appliance.stored() == before


def test_rate_limit_per_device(appliance):
    dev, other, api = appliance.enroll("rep-rate"), appliance.enroll("rep-rate-2"), appliance.client()
    sent = [error_report(severity="info", kind="log") for _ in range(6)]
    for body in sent:
        assert api.post("/api/v1/reports", body, dev.auth()).status == 201
    before = appliance.stored()
    r = api.post("/api/v1/reports", error_report(attachments=[{"name": "a", "content": "eA=="}]), dev.auth())
    assert r.status == 429 and r.json["error"] == "rate_limited"
    assert 3500 < int(r.headers["retry-after"]) <= 3600 and r.json["retry_after"] == int(r.headers["retry-after"])
    assert appliance.stored() == before
    assert api.post("/api/v1/reports", sent[0], dev.auth()).json["duplicate"] is True  # spool resends still clear
    assert api.post("/api/v1/reports", error_report(), other.auth()).status == 201  # others unaffected


def test_storage_cap_per_device(appliance):
    dev, api = appliance.enroll("rep-disk"), appliance.client()
    for i in range(2):
        blob = bytes([i]) * 4000
        assert api.post("/api/v1/reports", error_report(attachments=[{"name": "d", "content": b64(blob)}]),
                        dev.auth()).status == 201
    before = appliance.stored()
    r = api.post("/api/v1/reports", error_report(attachments=[{"name": "d", "content": b64(b"z" * 2001)}]),
                 dev.auth())
    assert r.status == 507 and r.json["error"] == "storage_full"
    assert appliance.stored() == before
    assert api.post("/api/v1/reports", error_report(), dev.auth()).status == 201  # without attachments: fine
