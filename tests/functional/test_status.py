"""`airlock status` through the real CLI, on a real appliance with history
(tests/functional/export/conftest.py): repositories and expiries, devices by
state, last import and export, disk, clock, and whether a real `airlock
serve` answers on the configured bind."""

from __future__ import annotations

import http.server
import json
import re
import threading
from datetime import timedelta

import pytest

from tests.functional.export.conftest import Site, build_site
from tests.support.server import airlock_server, free_port


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    return build_site(tmp_path_factory.mktemp("status"))


def status_json(site: Site) -> dict:
    r = site.airlock("status", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_one_screen_without_serve(site, monkeypatch):
    monkeypatch.setenv("AIRLOCK_BIND", f"127.0.0.1:{free_port()}")  # nothing listens there
    r = site.airlock("status")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) < 25, r.out  # one screen
    appliance_id = (site.home / "appliance-id").read_text().strip()
    assert lines[0].startswith(f"appliance {appliance_id}")
    assert "NOT answering" in r.out and "systemctl start airlock" in r.out
    # the simulator's timestamp expires in 7 days: "ok" or, a moment later, "expires soon"
    assert re.search(r"repository acme: (ok|expires soon); first to expire: timestamp v\d+, expires in", r.out)
    assert "devices refuse every update from acme" in r.out
    assert "3 accepted" in r.out and "1 decommissioned" in r.out
    assert "import 1 from" in r.out and "usb-bundle by " in r.out and ": accepted" in r.out

    doc = status_json(site)
    assert doc["appliance_id"] == appliance_id and doc["clock_utc"].endswith("+00:00")
    assert doc["serve"]["answers"] is False
    assert doc["disk"]["free_bytes"] > 0 and doc["disk"]["total_bytes"] >= doc["disk"]["free_bytes"]
    (acme,) = doc["served"]["repositories"]
    assert {r["role"] for r in acme["roles"]} == {"root", "timestamp", "snapshot", "targets"}
    assert acme["next_expiry"]["role"] == "timestamp" and 6 < acme["next_expiry"]["days_left"] <= 7
    assert doc["served"]["devices"] == {"accepted": 3, "decommissioned": 1}
    assert doc["served"]["last_export"] is None or "export" in doc["served"]["last_export"]["what"]


def test_last_export_and_serve_answering(site, tmp_path, monkeypatch):
    (tmp_path / "usb").mkdir()
    assert site.airlock("export", tmp_path / "usb").code == 0
    with airlock_server(site.home) as base:
        monkeypatch.setenv("AIRLOCK_BIND", base.removeprefix("http://"))
        r = site.airlock("status")
        assert r.code == 0, r.err
        assert f"answers on {base}/healthz: healthy" in r.out, r.out
        doc = status_json(site)
    assert doc["serve"] == {"url": f"{base}/healthz", "answers": True, "status": 200, "detail": "healthy"}
    assert doc["served"]["last_export"]["what"].startswith("export ")
    assert "airlock-export-" in r.out.splitlines()[-2]
    assert r.out.splitlines()[-1].startswith("backup    no backup yet")


def test_last_backup(site, tmp_path):
    (tmp_path / "pw").write_text("a passphrase long enough\n")
    (tmp_path / "usb").mkdir()
    assert site.airlock("backup", tmp_path / "usb", "--passphrase-file", tmp_path / "pw").code == 0
    (name,) = [p.name for p in (tmp_path / "usb").iterdir()]
    assert status_json(site)["served"]["last_backup"]["what"].startswith(name + " by ")
    assert name in site.airlock("status").out.splitlines()[-1]


def test_something_else_on_the_bind_is_not_taken_for_airlock(site, monkeypatch):
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AIRLOCK_BIND", f"127.0.0.1:{server.server_address[1]}")
        doc = status_json(site)
    finally:
        server.shutdown()
        server.server_close()
    assert doc["serve"]["answers"] is False and "not Airlock's" in doc["serve"]["detail"]


def test_expired_metadata_says_what_devices_do(site):
    """The clock is injectable in the service: days on, the timestamp
    expires soon, then has expired."""
    from appliance.status import gather, render
    from server import bind_database
    from server.clock import utcnow
    from server.settings import load_settings

    settings = load_settings(site.home)
    db = bind_database(settings, read_only=True)
    try:
        soon = gather(settings, now=utcnow() + timedelta(days=3))
        report = gather(settings, now=utcnow() + timedelta(days=8))
    finally:
        db.close()
    assert soon.served.repositories[0].state == "expires soon"
    (acme,) = report.served.repositories
    assert acme.state == "EXPIRED" and acme.next_expiry is not None and acme.next_expiry.role == "timestamp"
    text = render(report)
    assert "expired 1." in text and "now devices refuse every update from acme" in text


def test_status_is_read_only(site):
    from appliance.cli import READ_ONLY

    assert "status" in READ_ONLY
