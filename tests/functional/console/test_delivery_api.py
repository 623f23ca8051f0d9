"""The admin API for maintenance windows, download caps and alerts, with
each role's HTTP Basic credentials over the real app and database: admins
change, every role reads, bad input is one clear refusal that changes
nothing, and changes are audited under the API user's name."""

from __future__ import annotations

import base64

import pytest

from server import create_app
from server.settings import load_settings
from tests.functional.console.conftest import PASSWORDS
from tests.support import homedb


def basic(name: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()}


@pytest.fixture
def client(console_home):
    return create_app(load_settings(console_home, environ={})).test_client()


WINDOW = {"group": "line-3", "days": "sun", "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"}


def test_windows_caps_and_alerts_through_the_api(client, console_home):
    """One appliance for the three (each Basic login costs a password hash)."""
    _windows(client, console_home)
    _download_caps(client)
    _alerts(client)


def _windows(client, console_home):
    r = client.post("/api/v1/admin/windows", json=WINDOW, headers=basic("ada"))
    assert r.status_code == 201 and r.json["days"] == ["sun"] and r.json["created_by"] == "ada (api)"
    assert client.post("/api/v1/admin/windows", json=WINDOW, headers=basic("otto")).status_code == 403
    listed = client.get("/api/v1/admin/windows?group=line-3", headers=basic("aude")).json["windows"]
    assert [(w["id"], w["timezone"]) for w in listed] == [(1, "Europe/Berlin")] and "open_now" in listed[0]
    for body, message in [({**WINDOW, "timezone": "Nowhere/Land"}, "IANA"), ({**WINDOW, "start": 2}, "string"),
                          ({**WINDOW, "extra": 1}, "unknown field 'extra'"),
                          ({k: v for k, v in WINDOW.items() if k != "days"}, "missing field 'days'")]:
        bad = client.post("/api/v1/admin/windows", json=body, headers=basic("ada"))
        assert bad.status_code == 400 and message in bad.json["message"], bad.json
    assert client.get("/api/v1/admin/windows?colour=red", headers=basic("ada")).status_code == 400
    assert len(client.get("/api/v1/admin/windows", headers=basic("ada")).json["windows"]) == 1
    assert client.delete("/api/v1/admin/windows/1", headers=basic("ada")).json["id"] == 1
    assert client.delete("/api/v1/admin/windows/1", headers=basic("ada")).status_code == 404
    rows = homedb.rows(console_home, "SELECT actor, action FROM audit_log WHERE action LIKE 'window.%' ORDER BY id")
    assert rows == [("ada (api)", "window.add"), ("ada (api)", "window.remove")]


def _download_caps(client):
    r = client.put("/api/v1/admin/download-caps/line-3", json={"max_downloads": 4, "max_bytes_per_second": 400000},
                   headers=basic("ada"))
    assert r.status_code == 200 and r.json["max_downloads"] == 4
    assert client.put("/api/v1/admin/download-caps/line-3", json={"max_downloads": 1},
                      headers=basic("otto")).status_code == 403
    shown = client.get("/api/v1/admin/download-caps", headers=basic("aude")).json
    assert shown["appliance"] == {"max_downloads": 0, "max_bytes_per_second": 0}
    assert [(g["group"], g["max_downloads"], g["max_bytes_per_second"]) for g in shown["groups"]] == [
        ("line-3", 4, 400000)]
    for body, message in [({"max_downloads": 0}, "at least 1"), ({"max_downloads": 2, "max_bytes_per_second": 5},
                                                                   "at least 1024"),
                          ({"max_downloads": True}, "whole number")]:
        bad = client.put("/api/v1/admin/download-caps/line-3", json=body, headers=basic("ada"))
        assert bad.status_code == 400 and message in bad.json["message"], bad.json
    assert client.get("/api/v1/admin/download-caps", headers=basic("ada")).json["groups"][0]["max_downloads"] == 4
    assert client.delete("/api/v1/admin/download-caps/line-3", headers=basic("ada")).status_code == 200
    assert client.delete("/api/v1/admin/download-caps/line-3", headers=basic("ada")).status_code == 404


def _alerts(client):
    from server.alerts import services

    services.open_alert("rollout_halted", "rollout:1", "wave 1 failed")
    answer = client.get("/api/v1/admin/alerts", headers=basic("aude")).json["alerts"]
    assert [(a["kind"], a["subject"], a["open"]) for a in answer] == [("rollout_halted", "rollout:1", True)]
    assert client.get("/api/v1/admin/alerts?kind=rollout_halted&all=1", headers=basic("otto")).status_code == 200
    assert client.get("/api/v1/admin/alerts?all=yes", headers=basic("ada")).status_code == 400
    assert client.get("/api/v1/admin/alerts?kind=mood", headers=basic("ada")).status_code == 400
    assert client.get("/api/v1/admin/alerts").status_code == 401
