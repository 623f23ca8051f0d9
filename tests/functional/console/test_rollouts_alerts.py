"""The console's Rollouts and Alerts pages and what the Overview says about
them, over a real signed repository, a real SQLite file and the real
services: a rollout halted by its own gate (a device of wave 1 reports a
failed install), the alerts that opens, and the timestamp warning of a
repository whose root does not let the appliance re-sign.  Every role reads
it all; only an admin's pause, resume, advance and abort go through, each
audited; device text is shown inert; an admin follows the halt from the
Overview to Resume in a real browser."""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import uuid

import pytest
from playwright import sync_api

from server import audit, bind_database, create_app
from server.devices import services as devices
from server.devices.records import Checkin, UpdateReportIn
from server.rollouts import services as rollouts
from server.rollouts.records import RolloutSpec
from server.settings import load_settings
from server.users import services as users
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock
from tests.functional.console.conftest import PASSWORDS
from tests.functional.console.test_browser_scenarios import log_in
from tests.functional.devices.client import SimDevice, utc_now
from tests.functional.reports.test_browser import ARGS, CHROMIUM
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim, in_days
from tests.unit.server.devices.conftest import accepted

HOSTILE = "flash write failed <script>alert(1)</script> \u202eexe.bin"


class Halted:
    def __init__(self, app, settings, rollout_id: int, failed: str):
        self.app, self.settings, self.id, self.failed = app, settings, rollout_id, failed


@pytest.fixture
def halted(console_home, tmp_path):
    """acme imported (plc-x 2.0.0); eight plc-x devices on 1.0.0; release
    2.0.0 under a rollout of waves 50% and 100%; the timestamp expires in 3 days; the first offered device
    reports a failed install, so the gate halts the rollout."""
    sim = RepoSim("acme")
    root = sim.first_root()
    (tmp_path / "root.json").write_bytes(root)
    assert run_airlock(console_home, "repo", "add", "acme", "--root", tmp_path / "root.json", "--fingerprint",
                       hashlib.sha256(root).hexdigest()).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"two" * 100, version="2.0.0")
    sim.timestamp.signed.expires = in_days(3)  # inside the Overview's warning time
    sim.publish()
    assert run_airlock(console_home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    settings = load_settings(console_home, environ={})
    app = create_app(settings)
    db = bind_database(settings)
    fleet = [accepted(settings, SimDevice(f"plc-{i}", firmware="1.0.0")) for i in range(8)]
    release, rollout = rollouts.approve_with_rollout(
        settings, "acme", "plc-x/fw-2.0.0.bin", "ada (test)",
        RolloutSpec(["50%", "100%"], soak=0, min_success=90, min_sample=1), hardware="plc-x")
    offered = [d for d in fleet if devices.record_checkin(settings, db, devices.authenticate(db, d.token),
                                                          Checkin("1.0.0", {})).update is not None]
    assert offered and len(offered) < len(fleet), "the fixed device ids fall in both waves"
    device = devices.authenticate(db, offered[0].token)
    for step, reason in (("downloading", None), ("failure", HOSTILE)):
        devices.record_report(device, UpdateReportIn(str(uuid.uuid4()), release.id, step, utc_now(), reason))
    [verdict] = rollouts.evaluate(settings)
    assert verdict.action == "halt"
    return Halted(app, settings, rollout.id, offered[0].device_id)


def client_for(app, name: str):
    client = app.test_client()
    session, cookie = users.login(name, PASSWORDS[name], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    return client, session.csrf


def text(page) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(page.get_data(as_text=True))).split())


def section(page, table_id: str) -> str:
    return re.search(rf'<table id="{table_id}">(.*?)</table>', page.get_data(as_text=True), re.S).group(1)


def inert(page) -> None:
    body = page.get_data(as_text=True)
    assert "<script>alert" not in body and "\u202e" not in body and "Traceback" not in body
    assert "style=" not in body and "<script" not in body  # the CSP allows nothing inline
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize("name", ["ada", "otto", "aude"])
def test_every_role_reads_the_halted_rollout_its_alerts_and_the_timestamp_warning(halted, name):
    client, _ = client_for(halted.app, name)
    rid = halted.id

    overview = client.get("/overview")
    assert overview.status_code == 200
    inert(overview)
    body = overview.get_data(as_text=True)
    line = re.search(rf'<p class="error halted-rollout" role="alert" data-rollout="{rid}">(.*?)</p>', body, re.S)
    assert line and f'<a href="/rollouts/{rid}">' in line.group(1) and "1 failed of 1 finished" in line.group(1)
    assert re.search(r'id="alerts-rollout_halted"><dt><a href="/alerts\?kind=rollout_halted">rollout_halted</a>'
                     r"</dt><dd>1</dd>", body)
    assert re.search(r'id="alerts-update_failed">.*?<dd>1</dd>', body)
    # RepoSim's root does not authorize the appliance's timestamp key
    warning = re.search(r'<p class="warn timestamp-warning" role="alert">(.*?)</p>', body, re.S).group(1)
    assert re.match(r"repository acme: timestamp.json v\d+ expires in", warning) and "may not re-sign" in warning
    assert "then devices refuse every update from acme" in warning

    listed = client.get("/rollouts")
    assert listed.status_code == 200
    row = re.search(rf'<tr data-rollout="{rid}" class="warn">(.*?)</tr>', listed.get_data(as_text=True), re.S)
    assert row and "halted" in row.group(1) and "plc-x/fw-2.0.0.bin" in row.group(1)
    assert client.get("/rollouts?state=running").get_data(as_text=True).count("data-rollout=") == 0
    assert client.get("/rollouts?state=lost").status_code == 400

    page = client.get(f"/rollouts/{rid}")
    assert page.status_code == 200
    inert(page)
    shown = text(page)
    assert "Halted at" in shown and "wave 1: 1 failed of 1 finished" in shown
    assert "90% of its devices succeeded" in shown and "more than 10% of its finished devices" in shown
    assert "once 1 finished" in shown and "soaked 0 s" in shown
    waves = re.findall(r'<tr data-wave="(\d)"[^>]*>(.*?)</tr>', section(page, "waves"), re.S)
    assert [n for n, _ in waves] == ["1", "2"]
    first = re.sub(r"<[^>]+>", "|", waves[0][1])
    assert "(current)" in first and "50%" in first and "|1|" in first  # one failed
    assert "not started" in waves[1][1]
    buttons = re.findall(rf'action="/rollouts/{rid}/(\w+)"', page.get_data(as_text=True))
    assert buttons == (["resume", "abort"] if name == "ada" else [])
    assert '<a href="/rollouts" aria-current="page">Rollouts</a>' in page.get_data(as_text=True)  # in the nav

    alerts = client.get("/alerts")
    assert alerts.status_code == 200
    inert(alerts)
    opened = section(alerts, "open-alerts")
    assert f'<a href="/rollouts/{rid}">rollout:{rid}</a>' in opened
    assert f'<a href="/devices/{halted.failed}">device:{halted.failed}</a>' in opened
    # the device's reason: escaped by Jinja, the bidi control made visible
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in opened and "\\u202eexe.bin" in opened
    only = client.get("/alerts?kind=rollout_halted")
    assert "rollout_halted" in section(only, "open-alerts") and "update_failed" not in section(only, "open-alerts")
    refused = client.get("/alerts?kind=nonsense")
    assert refused.status_code == 400 and "unknown alert kind 'nonsense'" in text(refused)


@pytest.mark.parametrize("name", ["otto", "aude"])
def test_an_operator_or_auditor_may_not_step_a_rollout(halted, name):
    client, csrf = client_for(halted.app, name)
    for step in ("resume", "abort", "pause", "advance"):
        r = client.post(f"/rollouts/{halted.id}/{step}", data={"csrf": csrf, "reason": "mine"})
        assert r.status_code == 403 and "may not do this: ask an admin" in text(r)
    assert rollouts.show(halted.id).state == "halted"
    assert not audit.search(action="rollout.resume", limit=5) and not audit.search(action="rollout.abort", limit=5)


def test_an_admin_resumes_pauses_advances_and_aborts_each_audited(halted):
    client, csrf = client_for(halted.app, "ada")
    rid = halted.id
    forged = client.post(f"/rollouts/{rid}/resume", data={})
    assert forged.status_code == 403 and "did not come from the console" in text(forged)
    assert rollouts.show(rid).state == "halted"
    assert client.get(f"/rollouts/{rid}/resume").status_code == 405  # nothing changes on GET

    r = client.post(f"/rollouts/{rid}/resume", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["Location"] == f"/rollouts/{rid}"
    assert rollouts.show(rid).state == "running"
    page = client.get(f"/rollouts/{rid}")
    assert re.findall(rf'action="/rollouts/{rid}/(\w+)"', page.get_data(as_text=True)) == ["pause", "advance", "abort"]
    # resuming closed the halt's alert: the Overview no longer shows it, the Alerts page lists it as closed
    overview = client.get("/overview").get_data(as_text=True)
    assert "halted-rollout" not in overview and 'id="alerts-rollout_halted"' not in overview
    closed = section(client.get("/alerts"), "closed-alerts")
    assert f"rollout:{rid}" in closed and "resumed by ada (console)" in closed

    assert client.post(f"/rollouts/{rid}/pause", data={"csrf": csrf}).status_code == 303
    assert rollouts.show(rid).state == "paused"
    assert client.post(f"/rollouts/{rid}/advance", data={"csrf": csrf}).status_code == 303
    assert rollouts.show(rid).current_wave == 2
    assert client.post(f"/rollouts/{rid}/abort", data={"csrf": csrf, "reason": "bad <b>batch</b>"}).status_code == 303
    aborted = client.get(f"/rollouts/{rid}")
    assert rollouts.show(rid).state == "aborted" and "bad &lt;b&gt;batch&lt;/b&gt;" in aborted.get_data(as_text=True)
    assert "action=\"/rollouts/" not in aborted.get_data(as_text=True)  # nothing left to do

    again = client.post(f"/rollouts/{rid}/resume", data={"csrf": csrf})
    assert again.status_code == 409 and f"rollout {rid} is aborted" in text(again)
    unknown = client.post(f"/rollouts/{rid}/explode", data={"csrf": csrf})
    assert unknown.status_code == 404 and "use one of pause, resume, advance, abort" in text(unknown)
    assert client.get("/rollouts/999").status_code == 404
    steps = [(e.actor, e.action) for e in audit.search(subject=f"rollout {rid}", limit=50)]
    for action in ("rollout.resume", "rollout.pause", "rollout.advance", "rollout.abort"):
        assert ("ada (console)", action) in steps, action
    assert ("airlock", "rollout.halt") in steps


def test_alerts_page_with_no_alert_and_no_rollout(console_home):
    app = create_app(load_settings(console_home, environ={}))
    client, _ = client_for(app, "otto")
    assert "No open alert." in text(client.get("/alerts")) and "No closed alert yet." in text(client.get("/alerts"))
    assert "No rollout." in text(client.get("/rollouts"))
    overview = client.get("/overview").get_data(as_text=True)
    assert 'id="open-alerts">No open alert.' in overview and "timestamp-warning" not in overview


def test_an_admin_follows_a_halted_rollout_from_the_overview_in_a_browser(halted, console_home, tmp_path):
    """Debian's chromium against a real `airlock serve`: the Overview's line
    leads to the rollout, Resume works, and no page breaks the CSP."""
    assert shutil.which(CHROMIUM), "needs Debian's chromium: run `sh tests/prereqs.sh` as root (`make test` does)"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with airlock_server(console_home, workers=1, threads=2) as base, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            log_in(page, base, "ada")
            assert "halted" in page.locator(f".halted-rollout[data-rollout='{halted.id}']").inner_text()
            page.screenshot(path=shots / "overview-halted-rollout.png", full_page=True)
            with page.expect_navigation():
                page.click(f".halted-rollout a[href='/rollouts/{halted.id}']")
            assert page.locator("h1").inner_text() == f"Rollout {halted.id}"
            assert page.locator("#state").inner_text() == "halted"
            page.screenshot(path=shots / "rollout-halted-admin.png", full_page=True)
            with page.expect_navigation():
                page.click(f"form[action='/rollouts/{halted.id}/resume'] button")
            assert page.locator("#state").inner_text() == "running"
            with page.expect_navigation():
                page.click(".bar nav a:text-is('Alerts')")
            assert f"rollout:{halted.id}" in page.locator("#closed-alerts").inner_text()
            assert page.evaluate("document.scripts.length") == 0
            page.screenshot(path=shots / "alerts-admin.png", full_page=True)
            context.close()
        finally:
            browser.close()
    assert not [m for m in console if "Content Security Policy" in m], console
    assert rollouts.show(halted.id).state == "running"
