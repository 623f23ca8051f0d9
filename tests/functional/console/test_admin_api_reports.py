"""The admin API's device detail and report triage against a real
`airlock serve`, every answer checked against the served OpenAPI document:
each role reads, admins and operators triage, auditors are refused, and
attachments never reveal where the appliance keeps them."""

from __future__ import annotations

from tests.functional.console.test_admin_api import basic


def test_device_detail_and_report_triage(fleet):
    home, api = fleet
    device = api.get("/api/v1/admin/devices/plc-00", headers=basic("aude"))
    assert device.status == 200 and device.json["summary"]["device_id"] == "plc-00"
    assert device.json["summary"]["firmware"] == "1.2.0"
    assert api.get("/api/v1/admin/devices/nope", headers=basic("aude")).status == 404
    listed = api.get("/api/v1/admin/reports?device=plc-00&status=new", headers=basic("otto"))
    assert listed.status == 200 and [r["device_id"] for r in listed.json["reports"]] == ["plc-00"]
    number = listed.json["reports"][0]["id"]
    detail = api.get(f"/api/v1/admin/reports/{number}", headers=basic("aude")).json
    assert detail["summary"]["status"] == "new" and all("path" not in a for a in detail["attachments"])
    refused = api.post(f"/api/v1/admin/reports/{number}/acknowledge", headers=basic("aude"))
    assert refused.status == 403
    done = api.post(f"/api/v1/admin/reports/{number}/acknowledge", {"text": "on it"}, headers=basic("otto"))
    assert done.status == 200 and done.json["summary"]["status"] == "acknowledged"
    assert done.json["notes"][-1]["text"] == "on it"
    again = api.post(f"/api/v1/admin/reports/{number}/acknowledge", headers=basic("otto"))
    assert again.status == 409 and "only a report that is new" in again.json["message"]
    empty = api.post(f"/api/v1/admin/reports/{number}/note", {}, headers=basic("ada"))
    assert empty.status == 400
    assert api.get("/api/v1/admin/reports?status=bogus", headers=basic("ada")).status == 400
