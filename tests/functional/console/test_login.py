"""The console at `/` against a real `airlock serve` (gunicorn, two
workers): logging in and out as each role, cookies and security headers,
sessions ended from the CLI while the server runs, throttling shared by the
workers, the Overview's real numbers, and no stack trace ever reaching a
browser."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from tests.conftest import pin, run_airlock
from tests.functional.console.browser import Browser
from tests.functional.console.conftest import PASSWORDS, ROLE_OF
from tests.functional.devices.client import ApiClient, SimDevice, utc_now
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim


@pytest.fixture
def served(console_home):
    with airlock_server(console_home, workers=2, threads=4) as base:
        yield console_home, base


def audit(home) -> list[tuple[str, str, dict]]:
    return [(a, s, json.loads(d)) for a, s, d in homedb.rows(home, "SELECT action, subject, details FROM audit_log "
                                                                   "ORDER BY id")]


def check_security_headers(answer) -> None:
    csp = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp.replace("default-src 'none'", "")
    assert "'unsafe-inline'" not in csp and "default-src 'none'" in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("name", ["ada", "otto", "aude"])
def test_log_in_and_out_as_each_role(served, name):
    home, base = served
    browser = Browser(base)
    form = browser.get("/")
    assert form.status == 200 and 'name="username"' in form.text and 'name="password"' in form.text
    check_security_headers(form)
    assert "<script" not in form.text and "style=" not in form.text
    (login_cookie,) = form.cookies()
    assert "HttpOnly" in login_cookie and "SameSite=Strict" in login_cookie and "Secure" not in login_cookie

    r = browser.post("/login", {"username": name, "password": PASSWORDS[name], "csrf": form.csrf})
    assert r.status == 303 and r.headers["Location"] == "/overview"
    session_cookie = next(c for c in r.cookies() if c.startswith("airlock_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie and "Path=/" in session_cookie
    token = browser.jar["airlock_session"]
    assert token not in homedb.all_text(home)  # only its hash is stored

    page = browser.get("/overview")
    assert page.status == 200 and f"{name} <span class=\"role\">{ROLE_OF[name]}</span>" in page.text
    check_security_headers(page)
    assert browser.get("/").headers["Location"] == "/overview"
    css = browser.get("/console/static/console.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")

    r = browser.post("/logout", {"csrf": page.csrf})
    assert r.status == 303 and r.headers["Location"] == "/"
    assert "airlock_session" not in browser.jar
    replay = Browser(base, {"airlock_session": token})  # the old cookie, kept by someone
    assert replay.get("/overview").status == 303
    assert [(a, s) for a, s, _ in audit(home)][-2:] == [("user.login", name), ("user.logout", name)]


def test_wrong_password_forged_form_and_logout_without_token_are_refused(served):
    home, base = served
    browser = Browser(base)
    r = browser.login("ada", "not the password at all")
    assert r.status == 401 and "Wrong user name or password." in r.text and "airlock_session" not in browser.jar
    r = browser.login("nobody-here", "whatever it is")
    assert r.status == 401 and "Wrong user name or password." in r.text
    browser.get("/")
    r = browser.post("/login", {"username": "ada", "password": PASSWORDS["ada"], "csrf": "made-up"})
    assert r.status == 403 and "airlock_session" not in browser.jar
    r = browser.post("/login", {"username": "ada", "password": PASSWORDS["ada"], "csrf": browser.get("/").csrf},
                     headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert r.status == 403 and "another site" in r.text and "airlock_session" not in browser.jar
    assert browser.login("ada", PASSWORDS["ada"]).status == 303
    assert browser.post("/logout", {"csrf": "wrong"}).status == 403
    assert browser.get("/overview").status == 200  # still logged in: a forged logout did nothing
    failed = [(s, d["reason"], d["via"]) for a, s, d in audit(home) if a == "user.login_failed"]
    assert failed == [("ada", "wrong name or password", "console"),
                      ("nobody-here", "wrong name or password", "console")]


def test_sessions_end_when_the_cli_changes_the_user(served, tmp_path):
    home, base = served
    browsers = {name: Browser(base) for name in ("otto", "aude", "ada")}
    for name, browser in browsers.items():
        assert browser.login(name, PASSWORDS[name]).status == 303
        assert browser.get("/overview").status == 200
    assert run_airlock(home, "users", "set-role", "otto", "auditor").code == 0
    assert run_airlock(home, "users", "disable", "aude").code == 0
    (tmp_path / "new").write_text("ada's second password\n")
    assert run_airlock(home, "users", "passwd", "ada", "--password-file", tmp_path / "new").code == 0
    for browser in browsers.values():
        assert browser.get("/overview").status == 303  # back to the login form, in every worker
    assert browsers["otto"].login("otto", PASSWORDS["otto"]).status == 303
    assert "otto <span class=\"role\">auditor</span>" in browsers["otto"].get("/overview").text
    assert browsers["aude"].login("aude", PASSWORDS["aude"]).status == 401


def test_throttling_holds_across_workers(served):
    home, base = served
    answers = []
    for _ in range(6):  # a fresh connection each time: gunicorn hands them to either worker
        answers.append(Browser(base).login("otto", "a wrong guess, again").status)
    assert answers == [401] * 5 + [429]
    r = Browser(base).login("otto", PASSWORDS["otto"])  # even the right password waits
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0 and "Too many failed logins" in r.text
    assert Browser(base).login("ada", PASSWORDS["ada"]).status == 303  # other names are not held up


def test_overview_shows_the_appliances_real_numbers(served, tmp_path):
    home, base = served
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"firmware two" * 100, hardware=("plc-x",), version="2.0.0")
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    api = ApiClient(base)
    devices = [SimDevice(f"plc-{i}") for i in range(4)]
    for dev in devices:
        assert api.post("/api/v1/enroll", dev.enrollment()).status == 202
    for dev in devices[:2]:
        assert run_airlock(home, "devices", "accept", dev.device_id).code == 0
        dev.token = api.post("/api/v1/enroll", dev.enrollment()).json["token"]
    assert run_airlock(home, "devices", "reject", devices[3].device_id).code == 0
    checkin = api.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}}, devices[0].auth())
    assert checkin.status == 200
    report = {"report_id": str(uuid.uuid4()), "kind": "crash", "severity": "critical", "message": "hard fault",
              "firmware": "1.0.0", "occurred_at": utc_now()}
    assert api.post("/api/v1/reports", report, devices[0].auth()).status == 201
    api.close()

    browser = Browser(base)
    assert browser.login("aude", PASSWORDS["aude"]).status == 303
    page = browser.get("/overview").text
    tiles = dict(re.findall(r'id="(devices-\w+|reports-\w+)"><dt>\w+</dt>\s*<dd>(\d+)</dd>', page))
    assert tiles == {"devices-online": "1", "devices-offline": "1", "devices-pending": "1", "devices-flagged": "0",
                     "devices-rejected": "1", "devices-decommissioned": "0",
                     "reports-new": "1", "reports-acknowledged": "0", "reports-resolved": "0"}
    table = re.search(r'<table class="expiries" data-repository="acme">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr( class=\"warn\")?><td>(\w+)</td><td>(\d+)</td>\s*<td>[^<]+</td><td>(-?\d+)</td>", table)
    assert [row[1] for row in rows] == ["root", "timestamp", "snapshot", "targets"]
    for warn, _, _, days_left in rows:  # an expiry within a week is marked
        assert bool(warn) == (int(days_left) < 7)
    assert "1 target file" in page
    assert re.search(r'id="last-import">accepted at \S+\s+by \S+ from \S+usb', page)
    assert 'id="last-export">none yet' in page
    free, total = map(float, re.search(r'id="disk">([\d.]+) GB free of ([\d.]+) GB', page).groups())
    assert 0 < free <= total


def test_no_stack_trace_reaches_a_browser(served):
    home, base = served
    browser = Browser(base)
    assert browser.login("ada", PASSWORDS["ada"]).status == 303
    con = homedb.connect(home)
    con.execute("DROP TABLE report_note")  # a database broken under the running server
    con.execute("DROP TABLE report_attachment")
    con.execute("DROP TABLE report")
    con.commit()
    con.close()
    r = browser.get("/overview")
    assert r.status == 500 and "unexpected error" in r.text
    for leak in ("Traceback", "File \"", "sqlite3", "psycopg2", "OperationalError", "ProgrammingError", "no such table",
                 "does not exist"):
        assert leak not in r.text
    check_security_headers(r)
    assert "Traceback" in (home / "serve.log").read_text()  # the details are in the log, for IT
    missing = browser.get("/no/such/page")
    assert missing.status == 404 and "There is no such page here." in missing.text


def test_cookies_are_secure_behind_a_tls_proxy(console_home):
    """nginx terminating TLS on the appliance itself passes X-Forwarded-Proto,
    which the app trusts with behind_proxy = 1 (and a loopback bind) only:
    the cookies then say Secure."""
    with (console_home / "airlock.toml").open("a") as toml:
        toml.write("\nbehind_proxy = 1\n")
    with airlock_server(console_home, workers=1, threads=4) as base:
        _secure_behind_the_proxy(base)


def _secure_behind_the_proxy(base: str) -> None:
    browser = Browser(base)
    tls = {"X-Forwarded-Proto": "https"}
    form = browser.get("/", headers=tls)
    assert all("Secure" in c for c in form.cookies())
    assert form.headers["Strict-Transport-Security"].startswith("max-age=")
    r = browser.post("/login", {"username": "ada", "password": PASSWORDS["ada"], "csrf": form.csrf}, headers=tls)
    assert r.status == 303
    assert all("Secure" in c for c in r.cookies() if c.startswith("airlock_session="))
    plain = Browser(base).get("/")
    assert not any("Secure" in c for c in plain.cookies()) and "Strict-Transport-Security" not in plain.headers
