"""The charts on real pages: the Overview's firmware versions by model
(counted in the database) and update outcomes, a device's metrics over
time from its check-ins; each inline SVG, under the unchanged CSP."""

from __future__ import annotations

import re

from server import create_app
from server.clock import utcnow
from server.settings import load_settings
from server.users import services
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock
from tests.functional.console.conftest import PASSWORDS
from tests.functional.console.test_imports import pin
from tests.functional.devices.client import SimDevice, report
from tests.support.simulator import RepoSim


def test_overview_and_device_charts(console_home, tmp_path):
    sim = RepoSim("acme")
    pin(console_home, sim, tmp_path)
    sim.add_target("fw/plc-x-2.0.0.bin", b"two" * 100, version="2.0.0")
    sim.publish()
    assert run_airlock(console_home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    assert run_airlock(console_home, "releases", "approve", "acme", "fw/plc-x-2.0.0.bin", "--hardware",
                       "plc-x").code == 0
    app = create_app(load_settings(console_home, environ={}))
    client = app.test_client()
    devices = [SimDevice("plc-1", firmware="1.0.0"), SimDevice("plc-2", firmware="1.0.0"),
               SimDevice("gw-1", hardware="gw-1", firmware="2.0.0"), SimDevice("plc-9", firmware="9.9.9")]
    for dev in devices:
        assert client.post("/api/v1/enroll", json=dev.enrollment()).status_code == 202
    for dev in devices[:3]:  # plc-9 stays pending: not counted
        assert run_airlock(console_home, "devices", "accept", dev.device_id).code == 0
    dev = devices[0]
    dev.token = client.post("/api/v1/enroll", json=dev.enrollment()).json["token"]
    for temp in (41.5, 47.0, 44.25):
        answer = client.post("/api/v1/checkin", json={"firmware": "1.0.0", "metrics": {"cpu_temp_c": temp}},
                             headers=dev.auth())
        assert answer.status_code == 200, answer.json

    for step in ("success", "failure", "failure"):  # as the device's update agent reports them
        answer = client.post("/api/v1/updates", json=report(1, step), headers=dev.auth())
        assert answer.status_code in (200, 201), answer.json

    _, cookie = services.login("otto", PASSWORDS["otto"], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    page = client.get("/overview")
    text = page.get_data(as_text=True)
    firmware = re.search(r'<figure id="firmware-chart">(.*?)</figure>', text, re.S).group(1)
    assert re.findall(r"<title>([^<]*: \d+)</title>", firmware) == ["gw-1 2.0.0: 1", "plc-x 1.0.0: 2"]
    updates = re.search(r'<figure id="updates-chart">(.*?)</figure>', text, re.S).group(1)
    today = utcnow().date().isoformat()
    assert f"<title>{today}: 1 successes</title>" in updates and f"<title>{today}: 2 failures</title>" in updates
    assert len(re.findall(r": 0 successes</title>", updates)) == 13  # fourteen days, reports today only
    assert "script-src" not in page.headers["Content-Security-Policy"]

    device = client.get("/devices/plc-1").get_data(as_text=True)
    chart = re.search(r'<figure id="metrics-chart">(.*?)</figure>', device, re.S).group(1)
    assert "cpu_temp_c" in chart and "41.5 to 47, 3 samples" in chart
    assert "no metrics reported yet" in client.get("/devices/plc-2").get_data(as_text=True)


def test_admin_tags_untags_and_removes_a_device(console_home):
    app = create_app(load_settings(console_home, environ={}))
    client = app.test_client()
    dev = SimDevice("plc-5")
    assert client.post("/api/v1/enroll", json=dev.enrollment()).status_code == 202
    session, cookie = services.login("ada", PASSWORDS["ada"], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    csrf = session.csrf
    assert client.post("/devices/plc-5/tag", data={"csrf": csrf, "tag": "hall-b"}).status_code == 303
    page = client.get("/devices/plc-5").get_data(as_text=True)
    assert "<dt>Tags</dt><dd>hall-b</dd>" in page and "Remove tag" in page
    bad = client.post("/devices/plc-5/tag", data={"csrf": csrf, "tag": "no spaces"})
    assert bad.status_code == 400 and "is not allowed" in bad.get_data(as_text=True)
    assert client.post("/devices/plc-5/untag", data={"csrf": csrf, "tag": "hall-b"}).status_code == 303
    assert "<dt>Tags</dt><dd>none</dd>" in client.get("/devices/plc-5").get_data(as_text=True)
    unconfirmed = client.post("/devices/plc-5/remove", data={"csrf": csrf})
    assert unconfirmed.status_code == 400 and "tick the box" in unconfirmed.get_data(as_text=True)
    assert client.get("/devices/plc-5").status_code == 200
    gone = client.post("/devices/plc-5/remove", data={"csrf": csrf, "confirm": "1"})
    assert gone.status_code == 303 and gone.headers["Location"] == "/devices"
    assert client.get("/devices/plc-5").status_code == 404
    audit = run_airlock(console_home, "audit", "list", "--json").out
    for action in ("device.tag", "device.untag", "device.remove"):
        assert f'"{action}"' in audit and "ada (console)" in audit, action

    _, otto = services.login("otto", PASSWORDS["otto"], LoginThrottle(), "test")
    operator = app.test_client()
    operator.set_cookie("airlock_session", otto)
    assert "Remove device" not in operator.get("/devices").get_data(as_text=True)
