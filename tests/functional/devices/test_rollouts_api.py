"""The rollouts' admin API against a real `airlock serve`: every answer is
checked against the OpenAPI document the server serves."""

from __future__ import annotations

from tests.functional.devices.client import SimDevice
from tests.functional.devices.test_device_api import basic, checkin, enroll_accepted


def test_create_show_and_step_a_rollout_over_http(appliance):
    assert appliance.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x").code == 0
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("rollout-api-1"))
    assert api.post("/api/v1/admin/rollouts", {"release_id": 1, "waves": ["100%"]}).status == 401
    r = api.post("/api/v1/admin/rollouts", {"release_id": 1, "waves": ["50%", "10%"]}, basic())
    assert r.status == 400 and r.json["error"] == "invalid_request" and "cumulative" in r.json["message"]
    r = api.post("/api/v1/admin/rollouts", {"release_id": 1, "waves": ["100%"], "soak": 0, "extra": 1}, basic())
    assert r.status == 400
    r = api.post("/api/v1/admin/rollouts", {"release_id": 1, "waves": ["100%"], "soak": 0, "min_sample": 3},
                 basic())
    assert r.status == 201, r.body
    rollout = r.json
    assert rollout["state"] == "running" and rollout["waves"][0]["target"] == "100%" and rollout["min_sample"] == 3
    answer = checkin(api, dev)
    assert answer.status == 200 and answer.json["update"]["release_id"] == 1
    r = api.get(f"/api/v1/admin/rollouts/{rollout['id']}", basic())
    assert r.status == 200 and r.json["waves"][0]["offered"] == 1
    assert api.get("/api/v1/admin/rollouts?state=running", basic()).json["rollouts"][0]["id"] == rollout["id"]
    assert api.get("/api/v1/admin/rollouts?state=sideways", basic()).status == 400
    assert api.post(f"/api/v1/admin/rollouts/{rollout['id']}/pause", None, basic()).json["state"] == "paused"
    assert api.post(f"/api/v1/admin/rollouts/{rollout['id']}/resume", None, basic()).json["state"] == "running"
    r = api.post(f"/api/v1/admin/rollouts/{rollout['id']}/abort", {"reason": "wrong line"}, basic())
    assert r.status == 200 and r.json["state"] == "aborted" and r.json["halt_reason"] == "wrong line"
    r = api.post(f"/api/v1/admin/rollouts/{rollout['id']}/pause", None, basic())
    assert r.status == 409 and "only a running rollout" in r.json["message"]
    assert api.post(f"/api/v1/admin/rollouts/{rollout['id']}/explode", None, basic()).status == 404
    assert api.get("/api/v1/admin/rollouts/999", basic()).status == 404
    assert checkin(api, dev).json["update"] is None  # aborted: nobody is offered it
    r = api.get("/api/v1/admin/devices/rollout-api-1/history", basic())
    assert r.status == 200 and r.json["device_id"] == "rollout-api-1"
    assert [(h["event"], h["rollout_id"], h["wave"]) for h in r.json["history"]] == [("offered", rollout["id"], 1)]
    assert api.get("/api/v1/admin/devices/nobody/history", basic()).status == 404
    audit = appliance.airlock("audit", "list", "--json").out
    assert '"rollout.create"' in audit and '"rollout.abort"' in audit and '"actor": "it-admin (api)"' in audit
