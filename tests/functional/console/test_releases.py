"""The Releases page and its admin API: an admin approves an imported
target for a model and for a group, an older approval in the same scope is
shown shadowed, a release is withdrawn; who runs which version is counted;
an auditor sees it all and changes nothing; each change is audited."""

from __future__ import annotations

import base64
import hashlib
import html
import re

import pytest
from jsonschema import Draft202012Validator

from server import create_app
from server.settings import load_settings
from server.users import services
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock
from tests.functional.console.conftest import PASSWORDS
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.support.simulator import RepoSim


@pytest.fixture
def released(console_home, tmp_path):
    sim = RepoSim("acme")
    root = sim.first_root()
    (tmp_path / "root.json").write_bytes(root)
    assert run_airlock(console_home, "repo", "add", "acme", "--root", tmp_path / "root.json", "--fingerprint",
                       hashlib.sha256(root).hexdigest()).code == 0
    sim.add_target("fw/plc-x-2.0.0.bin", b"two" * 100, version="2.0.0")
    sim.add_target("fw/plc-x-2.1.0.bin", b"two-one" * 100, version="2.1.0")
    sim.publish()
    assert run_airlock(console_home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    app = create_app(load_settings(console_home, environ={}))
    client = app.test_client()
    for i, firmware in enumerate(["1.0.0", "1.0.0", "2.0.0"]):
        dev = SimDevice(f"plc-{i}", firmware=firmware)
        assert client.post("/api/v1/enroll", json=dev.enrollment()).status_code == 202
        assert run_airlock(console_home, "devices", "accept", dev.device_id).code == 0
    return app


def session_client(app, name: str):
    client = app.test_client()
    session, cookie = services.login(name, PASSWORDS[name], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    return client, session.csrf


def rows(page: str) -> dict[int, str]:
    table = re.search(r'<table id="releases">(.*?)</table>', page, re.S).group(1)
    return {int(n): " ".join(re.sub(r"<[^>]+>", " ", html.unescape(body)).split())
            for n, body in re.findall(r'<tr data-release="(\d+)"[^>]*>(.*?)</tr>', table, re.S)}


def audit_actions(home) -> list[tuple[str, str, str]]:
    return homedb.rows(home, "SELECT actor, action, subject FROM audit_log WHERE action LIKE 'release.%' ORDER BY id")


def test_approve_shadow_and_withdraw_through_the_page(released, console_home):
    ada, csrf = session_client(released, "ada")
    page = ada.get("/releases").get_data(as_text=True)
    assert '<option value="acme fw/plc-x-2.1.0.bin">' in page and "No release is active" in page
    running = re.search(r'<table id="running">(.*?)</table>', page, re.S).group(1)
    assert re.search(r"<td>plc-x</td><td>1\.0\.0</td>\s*<td><a [^>]*>2</a>", running), running
    assert re.search(r"<td>plc-x</td><td>2\.0\.0</td>\s*<td><a [^>]*>1</a>", running), running

    for target in ("fw/plc-x-2.1.0.bin", "fw/plc-x-2.0.0.bin"):  # the older one second: it shadows the newer
        answer = ada.post("/releases", data={"csrf": csrf, "target": f"acme {target}", "hardware": "plc-x"})
        assert answer.status_code == 303, answer.get_data(as_text=True)
    answer = ada.post("/releases", data={"csrf": csrf, "target": "acme fw/plc-x-2.1.0.bin", "group": "hall-a"})
    assert answer.status_code == 303
    shown = rows(ada.get("/releases").get_data(as_text=True))
    assert "shadowed by release 2: offered to nobody" in shown[1] and "model plc-x" in shown[1]
    assert "offered" in shown[2] and "shadowed" not in shown[2]
    assert "group hall-a" in shown[3] and "ada (console)" in shown[3]

    both = ada.post("/releases", data={"csrf": csrf, "target": "acme fw/plc-x-2.1.0.bin", "hardware": "plc-x",
                                       "group": "hall-a"})
    assert both.status_code == 400 and "either a model or a group" in both.get_data(as_text=True)
    wrong = ada.post("/releases", data={"csrf": csrf, "target": "acme fw/none.bin", "hardware": "plc-x"})
    assert wrong.status_code == 422 and "none.bin" in html.unescape(wrong.get_data(as_text=True))

    assert ada.post("/releases/2/withdraw", data={"csrf": csrf}).status_code == 303
    shown = rows(ada.get("/releases").get_data(as_text=True))
    assert set(shown) == {1, 3} and "shadowed" not in shown[1]  # 2.1.0 for plc-x is offered again
    everything = rows(ada.get("/releases?all=1").get_data(as_text=True))
    assert "withdrawn" in everything[2] and "by ada (console)" in everything[2]
    again = ada.post("/releases/2/withdraw", data={"csrf": csrf})
    assert again.status_code == 422 and "already withdrawn" in again.get_data(as_text=True)
    assert audit_actions(console_home) == [
        ("ada (console)", "release.approve", "release 1"), ("ada (console)", "release.approve", "release 2"),
        ("ada (console)", "release.approve", "release 3"), ("ada (console)", "release.withdraw", "release 2")]


def test_auditor_and_operator_see_releases_and_change_nothing(released, console_home):
    for name in ("aude", "otto"):
        client, csrf = session_client(released, name)
        page = client.get("/releases").get_data(as_text=True)
        assert "Who runs which version" in page and 'id="approve"' not in page and "Withdraw" not in page
        refused = client.post("/releases", data={"csrf": csrf, "target": "acme fw/plc-x-2.1.0.bin",
                                                 "hardware": "plc-x"})
        assert refused.status_code == 403 and "may not do this" in refused.get_data(as_text=True)
    assert audit_actions(console_home) == []


def test_the_release_api_against_its_schemas(released):
    client = released.test_client()
    spec = client.get("/api/v1/openapi.json").json

    def check(path: str, method: str, answer) -> None:
        op = spec["paths"][path][method]
        schema = op["responses"][str(answer.status_code)]["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json)

    def auth(name: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()}

    made = client.post("/api/v1/admin/releases", headers=auth("ada"),
                       json={"repository": "acme", "target": "fw/plc-x-2.1.0.bin", "hardware": "plc-x"})
    assert made.status_code == 201, made.json
    check("/admin/releases", "post", made)
    assert made.json["version"] == "2.1.0" and made.json["approved_by"] == "ada (api)"
    refused = client.post("/api/v1/admin/releases", headers=auth("aude"),
                          json={"repository": "acme", "target": "fw/plc-x-2.0.0.bin", "hardware": "plc-x"})
    assert refused.status_code == 403
    bad = client.post("/api/v1/admin/releases", headers=auth("ada"), json={"repository": "acme"})
    assert bad.status_code == 400
    check("/admin/releases", "post", bad)
    listed = client.get("/api/v1/admin/releases", headers=auth("otto"))
    check("/admin/releases", "get", listed)
    assert [r["id"] for r in listed.json["releases"]] == [made.json["id"]]
    assert {(r["firmware"], r["devices"]) for r in listed.json["running"]} == {("1.0.0", 2), ("2.0.0", 1)}
    gone = client.post(f"/api/v1/admin/releases/{made.json['id']}/withdraw", headers=auth("ada"))
    assert gone.status_code == 200 and gone.json["withdrawn_by"] == "ada (api)"
    check("/admin/releases/{release_id}/withdraw", "post", gone)
    assert client.get("/api/v1/admin/releases", headers=auth("aude")).json["releases"] == []
