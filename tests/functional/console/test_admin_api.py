"""The admin API's read endpoints against a real `airlock serve`: each
role's HTTP Basic credentials, the device list's filters, sorting and
pages, the audit log's pages, and every answer checked against the OpenAPI
document the appliance serves (with jsonschema, independent of the
server's own validator)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.functional.console.conftest import PASSWORDS
from tests.support import homedb


def basic(name: str, password: str | None = None) -> dict:
    raw = f"{name}:{password or PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def ids(answer) -> list[str]:
    return [d["device_id"] for d in answer.json["devices"]]


@pytest.mark.parametrize("query, expected", [
    ("", ["gw-00", "gw-01", "gw-02", "gw-03"] + [f"plc-{i:02d}" for i in range(8)]),
    ("?hardware=gw-1", ["gw-00", "gw-01", "gw-02", "gw-03"]),
    ("?state=pending", ["gw-01", "gw-02", "gw-03", "plc-06", "plc-07"]),
    ("?state=rejected", ["gw-00"]),
    ("?state=online", ["plc-00"]),
    ("?state=offline", ["plc-01", "plc-02", "plc-03", "plc-04", "plc-05"]),
    ("?tag=hall-a&sort=-device_id", ["plc-02", "plc-01", "plc-00"]),
    ("?firmware=1.2.0", ["plc-00"]),
    ("?prefix=plc-0&state=accepted&per_page=4&page=2", ["plc-04", "plc-05"]),
    ("?sort=-last_seen&per_page=2", ["plc-00", "gw-00"]),  # never seen: last, by device id
    ("?flag=hot", []),
])
def test_device_list_filters_sorts_and_pages(fleet, query, expected):
    _, api = fleet
    r = api.get("/api/v1/admin/devices" + query, basic("otto"))
    assert r.status == 200, r.body
    assert ids(r) == expected


def test_totals_count_every_page(fleet):
    _, api = fleet
    first = api.get("/api/v1/admin/devices?per_page=5", basic("aude")).json
    assert (first["total"], first["page"], first["per_page"], len(first["devices"])) == (12, 1, 5, 5)
    last = api.get("/api/v1/admin/devices?per_page=5&page=3", basic("aude")).json
    assert len(last["devices"]) == 2 and last["total"] == 12
    assert api.get("/api/v1/admin/devices?per_page=5&page=9", basic("aude")).json["devices"] == []
    shown = api.get("/api/v1/admin/devices?state=online", basic("ada")).json["devices"][0]
    assert shown["online"] is True and shown["tags"] == ["hall-a"] and shown["hardware"] == "plc-x"


@pytest.mark.parametrize("query, expected", [
    ("?state=lost", "query parameter state"),
    ("?per_page=501", "query parameter per_page"),
    ("?page=0", "query parameter page"),
    ("?page=two", "must be a whole number"),
    ("?sort=secret", "query parameter sort"),
    ("?hardware=%1b%5b2J", "query parameter hardware"),
    ("?limit=5", "unknown query parameter 'limit'"),
    ("?tag=a&tag=b", "given 2 times"),
])
def test_bad_queries_are_refused_with_a_reason(fleet, query, expected):
    _, api = fleet
    r = api.get("/api/v1/admin/devices" + query, basic("ada"))
    assert r.status == 400 and r.json["error"] == "invalid_request" and expected in r.json["message"], r.json
    assert "\x1b" not in r.json["message"]


def test_each_role_reaches_what_the_table_allows(fleet):
    home, api = fleet
    allowed = {"/api/v1/admin/devices": {"ada", "otto", "aude"}, "/api/v1/admin/audit": {"ada", "aude"},
               "/api/v1/admin/users": {"ada", "aude"}}
    for path, names in allowed.items():
        for name in ("ada", "otto", "aude"):
            r = api.get(path, basic(name))
            if name in names:
                assert r.status == 200, (path, name, r.body)
            else:
                assert (r.status, r.json["error"]) == (403, "forbidden"), (path, name)
        r = api.get(path)
        assert (r.status, r.json["error"]) == (401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Basic ")
        assert api.get(path, basic("ada", "not ada's password")).status == 401
    r = api.post("/api/v1/admin/devices/plc-07/accept", None, basic("otto"))
    assert (r.status, r.json["error"]) == (403, "forbidden")  # an operator admits no device
    # a browser that cached ada's Basic credentials, sent another site's form: refused before the view
    cross = {**basic("ada"), "Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
    r = api.post("/api/v1/admin/devices/plc-07/accept", None, cross)
    assert (r.status, r.json["error"]) == (403, "forbidden"), r.body
    assert homedb.rows(home, "SELECT state FROM device WHERE device_id = 'plc-07'") == [("pending",)]
    users = api.get("/api/v1/admin/users", basic("aude")).json["users"]
    assert [(u["username"], u["role"]) for u in users] == [("ada", "admin"), ("aude", "auditor"), ("otto", "operator")]
    assert "password" not in json.dumps(users)


def test_audit_pages_and_filters(fleet):
    _, api = fleet
    assert api.get("/api/v1/admin/users", basic("aude", "a wrong guess")).status == 401  # audited
    everything = []
    after = 0
    for _ in range(100):  # bounded: the log here has far fewer than 100 pages of 5
        page = api.get(f"/api/v1/admin/audit?limit=5&after={after}", basic("aude")).json
        everything += page["entries"]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    ids_seen = [e["id"] for e in everything]
    assert ids_seen == sorted(ids_seen) and len(set(ids_seen)) == len(ids_seen)
    assert everything[0]["prev_hash"] == "0" * 64
    for before, entry in zip(everything, everything[1:], strict=False):
        assert entry["prev_hash"] == before["hash"]  # the chain, as the API shows it
    users = api.get("/api/v1/admin/audit?action=user.", basic("ada")).json["entries"]
    assert {e["action"] for e in users} >= {"user.create", "user.login_failed"}
    assert all(e["action"].startswith("user.") for e in users)
    accepts = api.get("/api/v1/admin/audit?action=device.accept&subject=plc-03", basic("ada")).json["entries"]
    assert [(e["action"], e["subject"]) for e in accepts] == [("device.accept", "plc-03")]
