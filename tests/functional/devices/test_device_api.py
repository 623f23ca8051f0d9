"""The device API against a real `airlock serve`: real keys, real HTTP, real
gunicorn workers; every answer is checked against the OpenAPI document."""

from __future__ import annotations

import base64
import json
import time

import pytest

from server.devices.views import SPEC
from tests.functional.devices.client import SimDevice, report
from tests.functional.devices.conftest import ADMIN, PASSWORD


def enroll_accepted(app, api, dev: SimDevice) -> SimDevice:
    assert api.post("/api/v1/enroll", dev.enrollment()).status == 202
    assert app.airlock("devices", "accept", dev.device_id).code == 0
    r = api.post("/api/v1/enroll", dev.enrollment())
    assert r.status == 200, r.body
    dev.token = r.json["token"]
    return dev


def checkin(api, dev: SimDevice, **metrics):
    return api.post("/api/v1/checkin", {"firmware": dev.firmware, "metrics": metrics}, dev.auth())


def basic(user=ADMIN, password=PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_the_document_is_served(appliance):
    api = appliance.client()
    assert api.get("/api/v1/openapi.json").json == json.loads(json.dumps(SPEC))


def test_enroll_accept_checkin_update_and_report(appliance):
    api = appliance.client()
    dev = SimDevice("flow-1", firmware="1.0.0")
    r = api.post("/api/v1/enroll", dev.enrollment())
    assert r.status == 202 and r.json["state"] == "pending" and "token" not in r.json
    pending = json.loads(appliance.airlock("devices", "list", "--json", "--state", "pending").out)
    assert [d["device_id"] for d in pending] == ["flow-1"]
    assert appliance.airlock("devices", "accept", "flow-1").code == 0
    r = api.post("/api/v1/enroll", dev.enrollment())
    assert r.status == 200 and r.json["state"] == "accepted"
    dev.token = r.json["token"]

    r = checkin(api, dev, uptime_s=100, boot_count=3, cpu_temp_c=55.5, storage_free_bytes=10**9,
                error_counters={"crc": 0}, gauges={"fan_rpm": 900})
    assert r.status == 200 and r.json == {"checkin_interval": 300, "jitter": 60, "update": None}
    assert r.headers["cache-control"] == "no-store"

    approved = appliance.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x")
    assert approved.code == 0, approved.err
    release_id = int(approved.out.split()[1].rstrip(":"))
    update = checkin(api, dev).json["update"]
    assert update == {"release_id": release_id, "repository": "acme", "target_path": "plc-x/fw-2.0.0.bin",
                      "version": "2.0.0", "metadata_url": "/repos/acme/metadata/",
                      "targets_url": "/repos/acme/targets/"}
    # the URLs it names serve the repository
    assert api.get(update["metadata_url"] + "timestamp.json").status == 200

    sent = []
    for step in ("downloading", "installing", "rebooted", "success"):
        body = report(release_id, step)
        sent.append(body)
        r = api.post("/api/v1/updates", body, dev.auth())
        assert r.status == 200 and r.json == {"status": "recorded", "duplicate": False}
    before = appliance.counts()
    r = api.post("/api/v1/updates", sent[-1], dev.auth())  # a resend from the device's spool
    assert r.json == {"status": "recorded", "duplicate": True} and appliance.counts() == before
    r = api.post("/api/v1/updates", report(9999, "success"), dev.auth())
    assert r.status == 422 and r.json["error"] == "unknown_release"
    stranger = enroll_accepted(appliance, api, SimDevice("flow-1-gw", hardware="gw-1"))
    before = appliance.counts()
    r = api.post("/api/v1/updates", report(release_id, "failure"), stranger.auth())  # another model's release
    assert r.status == 422 and r.json["error"] == "release_not_offered" and appliance.counts() == before

    dev.firmware = "2.0.0"
    assert checkin(api, dev).json["update"] is None
    shown = appliance.airlock("devices", "show", "flow-1")
    # the history: the offer, then the four steps reported
    assert "firmware 2.0.0" in shown.out and shown.out.count(f"release {release_id} (2.0.0)") == 5
    assert appliance.airlock("releases", "withdraw", str(release_id)).code == 0


def test_reject_and_decommission_revoke_the_token_at_once(appliance):
    api = appliance.client()
    a = enroll_accepted(appliance, api, SimDevice("revoke-a"))
    b = enroll_accepted(appliance, api, SimDevice("revoke-b"))
    assert checkin(api, a).status == 200 and checkin(api, b).status == 200
    assert appliance.airlock("devices", "reject", "revoke-a", "--reason", "unknown unit").code == 0
    assert appliance.airlock("devices", "decommission", "revoke-b").code == 0
    for dev in (a, b):
        r = checkin(api, dev)
        assert r.status == 401 and r.json["error"] == "invalid_token"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert api.post("/api/v1/updates", report(1, "success"), dev.auth()).status == 401
    r = api.post("/api/v1/enroll", a.enrollment())
    assert r.status == 403 and r.json["state"] == "rejected" and "unknown unit" in r.json["message"]
    assert api.post("/api/v1/enroll", b.enrollment()).json["state"] == "decommissioned"


def test_a_replayed_enrollment_is_refused_and_stores_nothing(appliance):
    api = appliance.client()
    dev = SimDevice("replay-1")
    body = dev.enrollment()
    assert api.post("/api/v1/enroll", body).status == 202
    appliance.airlock("devices", "accept", "replay-1")
    before = appliance.counts()
    r = api.post("/api/v1/enroll", body)
    assert r.status == 409 and r.json["error"] == "replayed_request" and appliance.counts() == before
    # nor can a captured request of an accepted device fetch it a token
    fresh = dev.enrollment()
    assert api.post("/api/v1/enroll", fresh).status == 200
    assert api.post("/api/v1/enroll", fresh).status == 409


def test_a_new_key_for_a_known_id_stays_pending(appliance):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("rekey-1"))
    impostor = SimDevice("rekey-1")
    r = api.post("/api/v1/enroll", impostor.enrollment())
    assert r.status == 202 and r.json["state"] == "pending" and "token" not in r.json
    assert checkin(api, dev).status == 200  # the enrolled key keeps working
    shown = json.loads(appliance.airlock("devices", "show", "rekey-1", "--json").out)
    assert [k["state"] for k in shown["keys"]] == ["active", "pending"]
    assert shown["summary"]["key_change_pending"] is True


def test_downgrades_only_when_permitted(appliance):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("down-1", firmware="1.9.0"))
    assert appliance.airlock("devices", "tag", "down-1", "lab").code == 0
    assert appliance.airlock("releases", "approve", "acme", "plc-x/fw-1.5.0.bin", "--group", "lab").code == 0
    assert checkin(api, dev).json["update"] is None
    allowed = appliance.airlock("releases", "approve", "acme", "plc-x/fw-1.5.0.bin", "--group", "lab",
                                "--allow-downgrade")
    assert allowed.code == 0
    assert checkin(api, dev).json["update"]["version"] == "1.5.0"


BAD_CHECKINS = [
    ({"firmware": "1.0.0", "metrics": {"cpu_temp_c": 20}, "extra": True}, "invalid_request"),
    ({"firmware": "1.0.0", "metrics": {"uptime_s": -5}}, "invalid_request"),
    ({"firmware": "1.0.0", "metrics": {"gauges": {f"g{i}": 1 for i in range(65)}}}, "invalid_request"),
    ({"firmware": "1.0.0", "metrics": {"gauges": {"g": 1}, "bogus": 1}}, "invalid_request"),
    ({"firmware": "not a version"}, "invalid_request"),
    ([], "invalid_request"),
]


def test_malformed_and_oversized_requests_are_4xx_json_and_store_nothing(appliance):
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("bad-1"))
    before = appliance.counts()
    checkins_before = appliance.checkins()
    for body, code in BAD_CHECKINS:
        r = api.post("/api/v1/checkin", body, dev.auth())
        assert r.status == 400 and r.json["error"] == code, (body, r.json)
    cases = [
        api.post("/api/v1/checkin", raw=b'{"firmware": "1.0.0", "metrics": {"cpu_temp_c": NaN}}', headers=dev.auth()),
        api.post("/api/v1/checkin", raw=b'{"firmware": "1.0.0", "firmware": "1.0.1"}', headers=dev.auth()),
        api.post("/api/v1/checkin", raw=b'{"firmware": ', headers=dev.auth()),
        api.post("/api/v1/checkin", raw=b"firmware=1.0.0", headers=dev.auth(), content_type="text/plain"),
        api.post("/api/v1/checkin", raw=json.dumps({"firmware": "1.0.0", "metrics": {
            "gauges": {f"g{i}": 1.0 for i in range(64)}, "last_reset_reason": "x" * 64}}).encode() + b" " * 17000,
            headers=dev.auth()),
        api.post("/api/v1/enroll", raw=b"{" + b" " * (2 << 20) + b"}"),  # over the app-wide 1 MiB
        api.post("/api/v1/checkin", {"firmware": "1.0.0"}),  # no token
        api.post("/api/v1/checkin", {"firmware": "1.0.0"}, {"Authorization": "Bearer " + "A" * 43}),
        api.post("/api/v1/checkin?token=" + dev.token, {"firmware": "1.0.0"}),  # never in URLs
        api.post("/api/v1/enroll", {**dev.enrollment(), "admin": True}),
        api.post("/api/v1/enroll", {k: v for k, v in dev.enrollment().items() if k != "nonce"}),
        api.post("/api/v1/enroll", dev.enrollment(device_id="../etc/passwd")),
        api.post("/api/v1/enroll", dev.enrollment(public_key=base64.b64encode(b"k" * 32).decode())),
        api.post("/api/v1/enroll", dev.enrollment(timestamp="2001-01-01T00:00:00Z")),
        api.post("/api/v1/updates", {"report_id": "x"}, dev.auth()),
        api.get("/api/v1/checkin"),
        api.get("/api/v1/nothing-here"),
        api.request("DELETE", "/api/v1/enroll"),
    ]
    statuses = [r.status for r in cases]
    assert statuses == [400, 400, 400, 415, 413, 413, 401, 401, 401, 400, 400, 400, 401, 400, 400, 405, 404, 405]
    for r in cases:
        assert set(r.json) >= {"error", "message"} and r.json["message"]
    assert cases[13].json["error"] == "clock_skew" and "server_time" in cases[13].json
    assert appliance.counts() == before and appliance.checkins() == checkins_before
    log = (appliance.home / "serve.log").read_text()
    assert dev.token not in log


def test_chunked_bodies_are_capped_too(appliance):
    import http.client

    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("chunked-1"))

    def chunks():
        yield b'{"firmware": "1.0.0", "metrics": {"last_reset_reason": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}}'

    host, port = appliance.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/api/v1/checkin", body=chunks(), encode_chunked=True,
                 headers={"Content-Type": "application/json", **dev.auth()})
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    assert r.status == 413 and body["error"] == "too_large"


def test_admin_api_with_basic_auth_and_a_login_limit(appliance):
    api = appliance.client()
    dev = SimDevice("admin-1")
    assert api.post("/api/v1/enroll", dev.enrollment()).status == 202
    r = api.post("/api/v1/admin/devices/admin-1/accept")
    assert r.status == 401 and r.headers["www-authenticate"].startswith("Basic")
    r = api.post("/api/v1/admin/devices/admin-1/accept", {"reason": "commissioned"}, basic())
    assert r.status == 200 and r.json["state"] == "accepted" and r.json["device_id"] == "admin-1"
    r = api.post("/api/v1/enroll", dev.enrollment())
    dev.token = r.json["token"]
    assert checkin(api, dev).status == 200
    r = api.post("/api/v1/admin/devices/admin-1/accept", None, basic())
    assert r.status == 409
    r = api.post("/api/v1/admin/devices/nobody/reject", None, basic())
    assert r.status == 404
    r = api.post("/api/v1/admin/devices/admin-1/reject", {"reason": "x", "extra": 1}, basic())
    assert r.status == 400
    r = api.post("/api/v1/admin/devices/admin-1/decommission", {"reason": "moved"}, basic())
    assert r.status == 200 and r.json["state"] == "decommissioned"
    assert checkin(api, dev).status == 401  # at once

    # Failed logins are limited per user name (per worker: one keep-alive
    # connection stays on one worker).
    statuses = []
    for _ in range(6):
        statuses.append(api.post("/api/v1/admin/devices/admin-1/accept", None, basic(password="wrong")).status)
    assert statuses == [401] * 5 + [429]
    r = api.post("/api/v1/admin/devices/admin-1/accept", None, basic())
    assert r.status == 429 and int(r.headers["retry-after"]) > 0 and r.json["retry_after"] > 0


def test_every_answer_was_checked_against_the_document(appliance):
    assert appliance.checker.checked > 50


@pytest.mark.slow
def test_concurrent_checkins_from_many_threads_have_no_errors(appliance):
    import threading

    api = appliance.client()
    threads, per_thread, devices_per_thread = 8, 200, 4
    fleet = [[enroll_accepted(appliance, api, SimDevice(f"load-{t}-{d}")) for d in range(devices_per_thread)]
             for t in range(threads)]
    before = appliance.checkins()
    errors: list[str] = []
    deadline = time.monotonic() + 60

    def run(devices):
        client = appliance.client()
        try:
            for i in range(per_thread):
                if time.monotonic() > deadline:
                    errors.append("time limit")
                    return
                dev = devices[i % len(devices)]
                r = checkin(client, dev, uptime_s=i, boot_count=1, cpu_temp_c=40.0 + i % 10,
                            error_counters={"crc": i}, gauges={"load": i / 10})
                if r.status != 200:
                    errors.append(f"{r.status} {r.body[:200]!r}")
        except Exception as exc:  # noqa: BLE001 - report every failure
            errors.append(repr(exc))
        finally:
            client.close()

    started = time.monotonic()
    workers = [threading.Thread(target=run, args=(devices,)) for devices in fleet]
    for w in workers:
        w.start()
    for w in workers:
        w.join(90)
    elapsed = time.monotonic() - started
    assert errors == [], errors[:5]
    assert appliance.checkins() - before == threads * per_thread
    assert "database is locked" not in (appliance.home / "serve.log").read_text()
    print(f"{threads * per_thread} check-ins in {elapsed:.1f} s ({threads * per_thread / elapsed:.0f}/s)")


def test_answered_checkins_stay_out_of_the_info_log_refused_ones_do_not(appliance):
    """A fleet's check-ins are routine traffic (833 lines a second for 50,000
    devices would overrun journald's rate limit): an answered one is logged
    at DEBUG, below the default INFO; a refused one is logged like any
    other request."""
    api = appliance.client()
    dev = enroll_accepted(appliance, api, SimDevice("log-level-1"))
    ok = api.post("/api/v1/checkin", {"firmware": dev.firmware, "metrics": {}},
                  {**dev.auth(), "X-Request-Id": "checkin-answered-0001"})
    assert ok.status == 200, ok.body
    refused = api.post("/api/v1/checkin", {"firmware": dev.firmware, "metrics": {}},
                       {"Authorization": "Bearer " + "x" * 43, "X-Request-Id": "checkin-refused-0001"})
    assert refused.status == 401, refused.body
    assert api.get("/healthz", {"X-Request-Id": "healthz-after-0001"}).status == 200
    deadline = time.monotonic() + 10  # the workers' lines reach the log file through a pipe
    while "healthz-after-0001" not in (log := (appliance.home / "serve.log").read_text()):
        assert time.monotonic() < deadline, "the health check's line never reached the log"
        time.sleep(0.05)
    assert "checkin-answered-0001" not in log
    refused_line = next(line for line in log.splitlines() if "request_id=checkin-refused-0001" in line)
    assert "level=info" in refused_line and "status=401" in refused_line and "path=/api/v1/checkin" in refused_line


def test_more_threads_than_database_connections_all_check_in(appliance):
    """On PostgreSQL each process has a pool of ``server.db.POOL_SIZE``
    connections for check-ins, and gunicorn runs up to 256 threads per
    worker.  A request thread used to keep the connection it took for good,
    so once more threads than that had checked in, the next one waited 30 s
    for a connection and answered 500 (the herd bench found it).  Here more
    threads than the pool holds each check in once and stay alive, as
    gunicorn's threads do: every check-in is answered, none waits out the
    pool's timeout."""
    import threading

    from server import create_app
    from server.db import POOL_SIZE
    from server.settings import load_settings

    count = POOL_SIZE + 8
    api = appliance.client()
    fleet = [enroll_accepted(appliance, api, SimDevice(f"pool-{i}")) for i in range(count)]
    app = create_app(load_settings(appliance.home))
    results: dict[str, str] = {}
    finished = threading.Event()

    def one(dev):
        try:
            r = app.test_client().post("/api/v1/checkin", json={"firmware": dev.firmware, "metrics": {}},
                                       headers=dev.auth())
            results[dev.device_id] = str(r.status_code)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            results[dev.device_id] = repr(exc)
        finished.wait(60)  # alive, like a gunicorn thread between requests

    threads = [threading.Thread(target=one, args=(dev,), daemon=True) for dev in fleet]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 25  # below the pool's 30 s wait: a thread left waiting for one fails here
        while len(results) < count and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        finished.set()
        for t in threads:
            t.join(60)
    assert sorted(results.values()) == ["200"] * count, (len(results), sorted(set(results.values())))
