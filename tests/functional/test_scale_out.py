"""Two app servers on one PostgreSQL and one published tree
(docs/scale-out.md): two real `airlock serve` processes on different ports,
as two boxes would run, sharing the home (the shared storage) and the
database.  Enrollments, approvals, check-ins, update reports, imports and
exports are spread over both: no check-in is lost, no action is applied
twice, the audit chain stays whole, and the import and export locks hold
across them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result, new_home, pin, run_airlock
from tests.functional.devices.client import ApiClient, SimDevice, report
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

ADMIN, PASSWORD = "it-admin", "a long admin password"
DEVICES = 8
CHECKINS = 8  # per device, alternating between the servers


@dataclass
class Site:
    home: Path
    root: Path
    sim: RepoSim
    servers: tuple[str, str]

    def airlock(self, *args) -> Result:
        return run_airlock(self.home, *args)

    def client(self, i: int) -> ApiClient:
        return ApiClient(self.servers[i % 2])

    def rows(self, sql: str, params=()) -> list[tuple]:
        return homedb.rows(self.home, sql, params)


@pytest.fixture(scope="module")
def site(tmp_path_factory, postgres_cluster):
    root = tmp_path_factory.mktemp("scale-out")
    url = postgres_cluster.new_database(migrated=False)  # `airlock init` migrates it
    home = new_home(root / "home", url)
    (root / "pw").write_text(PASSWORD)
    r = run_airlock(home, "init", "--admin", ADMIN, "--password-file", root / "pw")
    assert r.code == 0, r.err
    sim = RepoSim("acme")
    assert pin(lambda *a: run_airlock(home, *a), sim, root).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", b"firmware two" * 100, hardware=("plc-x",), version="2.0.0")
    sim.publish()
    r = run_airlock(home, "import", sim.write_bundle(root / "usb-1"))
    assert r.code == 0, r.err
    with airlock_server(home, workers=2, threads=8, log_name="serve-a.log") as a, \
            airlock_server(home, workers=2, threads=8, log_name="serve-b.log") as b:
        yield Site(home, root, sim, (a, b))
    from server.models import database

    if database.obj is not None and getattr(database.obj, "airlock_path", None) == url:
        database.obj.close_all()


def _in_threads(calls) -> list:
    out: list = [None] * len(calls)

    def run(i, call):
        try:
            out[i] = call()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return out


def _admin() -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{PASSWORD}".encode()).decode()}


def test_enrollments_approvals_checkins_and_reports_spread_over_both_servers(site):
    devices = [SimDevice(f"so-{i}", firmware="1.0.0") for i in range(DEVICES)]
    # enrollments, half on each server
    assert [site.client(i).post("/api/v1/enroll", d.enrollment()).status for i, d in enumerate(devices)] \
        == [202] * DEVICES

    # both servers asked at once to accept each device (one device at a time: logins in flight count
    # against the login throttle): it is accepted once, the other answer says it already was
    def accept(i, d):
        return site.client(i).post(f"/api/v1/admin/devices/{d.device_id}/accept", {}, _admin()).status
    answers = [sorted(_in_threads([lambda i=i, d=d: accept(i, d) for i in (0, 1)])) for d in devices]
    assert answers == [[200, 409]] * DEVICES, answers
    accepts = site.rows("SELECT subject, COUNT(*) FROM audit_log WHERE action = 'device.accept' GROUP BY subject")
    assert dict(accepts) == {d.device_id: 1 for d in devices}

    for i, d in enumerate(devices):  # tokens, from the server the device did not enroll with
        r = site.client(i + 1).post("/api/v1/enroll", d.enrollment())
        assert r.status == 200, r.body
        d.token = r.json["token"]

    # every device checks in CHECKINS times, alternating servers, all devices at once
    def check_in(k, d):
        api0, api1 = ApiClient(site.servers[0]), ApiClient(site.servers[1])
        stored = 0
        for n in range(CHECKINS):
            r = (api0, api1)[(k + n) % 2].post("/api/v1/checkin", {"firmware": d.firmware,
                                                                    "metrics": {"uptime_s": 100 + n}}, d.auth())
            assert r.status == 200, r.body
            stored += 1
        api0.close()
        api1.close()
        return stored
    answered = _in_threads([lambda k=k, d=d: check_in(k, d) for k, d in enumerate(devices)])
    assert answered == [CHECKINS] * DEVICES, answered
    # no lost check-in: each answered one is on the device row and has its sample
    counts = dict(site.rows("SELECT device_id, checkins FROM device WHERE device_id LIKE 'so-%'"))
    assert counts == {d.device_id: CHECKINS for d in devices}
    samples = site.rows("SELECT COUNT(*) FROM metric_sample m JOIN device d ON d.id = m.device "
                        "WHERE d.device_id LIKE 'so-%' AND m.resolution = 0")
    assert samples == [(DEVICES * CHECKINS,)]

    # a release approved on one box is offered by both
    approved = site.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x")
    assert approved.code == 0, approved.err
    release_id = int(approved.out.split()[1].rstrip(":"))
    for i in (0, 1):
        r = site.client(i).post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {}}, devices[0].auth())
        assert r.json["update"]["release_id"] == release_id
    # the same update report sent to both servers at once is recorded once
    body = report(release_id, "downloading")
    duplicates = _in_threads([lambda i=i: site.client(i).post("/api/v1/updates", body, devices[0].auth()).json
                              for i in (0, 1)])
    assert sorted(d["duplicate"] for d in duplicates) == [False, True], duplicates
    assert site.rows("SELECT COUNT(*) FROM update_report WHERE report_id = ?", (body["report_id"],)) == [(1,)]

    # every write above went into one hash chain, unbroken
    verified = site.airlock("audit", "verify")
    assert verified.code == 0, verified.err + verified.out


HOLDER = """
import sys
from server.locks import held_across_servers
from server.settings import load_settings
with held_across_servers(load_settings(sys.argv[1], environ={}), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


class _OtherBox:
    """Another app server's import or export in progress: a process holding
    the lock in PostgreSQL (its flock would be on its own box)."""

    def __init__(self, home: Path, name: str):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "held"

    def done(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(30) == 0


def test_the_import_lock_holds_across_servers_and_both_serve_the_new_tree(site):
    site.sim.add_target("plc-x/fw-2.1.0.bin", b"firmware two one" * 50, hardware=("plc-x",), version="2.1.0")
    site.sim.publish()
    bundle = site.sim.write_bundle(site.root / "usb-2")
    before = site.rows("SELECT COUNT(*) FROM import_record WHERE status = 'accepted'")
    other = _OtherBox(site.home, "import")
    try:
        r = site.airlock("import", bundle)
        assert r.code != 0 and "another import is running on an app server sharing this database" in r.err, r
        assert "\n" not in r.err.strip()
        assert site.rows("SELECT COUNT(*) FROM import_record WHERE status = 'accepted'") == before
    finally:
        other.done()
    r = site.airlock("import", bundle)
    assert r.code == 0, r.err
    # one published tree: both servers serve what the import published
    served = [site.client(i).get("/repos/acme/metadata/timestamp.json") for i in (0, 1)]
    assert [s.status for s in served] == [200, 200] and served[0].body == served[1].body
    assert served[0].body == (site.home / "public" / "repos" / "acme" / "metadata" / "timestamp.json").read_bytes()


def test_the_export_lock_holds_across_servers_and_an_export_holds_both_servers_work(site, tmp_path):
    for stick in ("usb-a", "usb-b"):
        (tmp_path / stick).mkdir()
    other = _OtherBox(site.home, "export")
    try:
        r = site.airlock("export", tmp_path / "usb-a")
        assert r.code != 0 and "another export is running on an app server sharing this database" in r.err, r
    finally:
        other.done()
    r = site.airlock("export", tmp_path / "usb-b")
    assert r.code == 0, r.err
    assert list((tmp_path / "usb-a").iterdir()) == []
    [written] = list((tmp_path / "usb-b").glob("airlock-export-*.tar"))
    assert site.rows("SELECT COUNT(*) FROM export_record") == [(1,)]
    with tarfile.open(written) as tar:
        member = tar.extractfile("devices.jsonl")
        assert member is not None
        exported = {d["device"]: d["checkins"] for d in map(json.loads, member.read().splitlines())}
    # what both servers recorded, as the database holds it (the earlier test's check-ins and enrollments)
    assert exported == dict(site.rows("SELECT device_id, checkins FROM device"))
    assert len(exported) == DEVICES and min(exported.values()) >= CHECKINS
