"""Download caps on a real appliance: over the cap a firmware download is
answered 503 with Retry-After and a clear body, metadata polls are not;
the cap holds across gunicorn workers, and a worker killed in the middle
of a download does not leak its slot; per-group caps find the group by the
address its devices check in from."""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from server import bind_database, create_app
from server.delivery import caps
from server.devices import services
from server.devices.records import Checkin
from server.settings import load_settings
from tests.conftest import pin
from tests.functional.devices.client import SimDevice
from tests.support.server import airlock_server
from tests.unit.server.devices.conftest import accepted

FIRMWARE = os.urandom(1 << 20)
# 64 KiB/s for each of 2: a download lasts 16 s unless its client leaves
PACED = "download_max_bytes_per_second = 131072\n"


@pytest.fixture
def served(airlock, sim, tmp_path, home):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("plc-x/fw-2.0.0.bin", FIRMWARE, hardware=("plc-x",), version="2.0.0")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    digest = sim.targets.signed.targets["plc-x/fw-2.0.0.bin"].hashes["sha256"]
    return f"/repos/acme/targets/plc-x/{digest}.fw-2.0.0.bin", "/repos/acme/metadata/timestamp.json"


def _start(base: str, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    return conn, conn.getresponse()


def _admitted(base: str, path: str):
    """A download started once a slot is free: the server frees it just
    after the last byte of the one before (bounded)."""
    for _ in range(200):
        conn, r = _start(base, path)
        if r.status == 200:
            return conn, r
        assert r.status == 503
        conn.close()
        time.sleep(0.05)
    raise AssertionError("no download slot came free")


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(c) for c in children]


def _serve_pid(home: Path) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if b"serve" in cmd and f"AIRLOCK_HOME={home}".encode() + b"\0" in environ:
                return int(entry.name)
    raise AssertionError("airlock serve is not running")


def test_the_cap_holds_across_workers_and_a_killed_worker_frees_its_slot(home, served):
    target, poll = served
    (home / "airlock.toml").write_text("download_max_concurrent = 2\ndownload_retry_after = 7\n" + PACED)
    with airlock_server(home, workers=2, threads=4) as base:
        held = [_start(base, target) for _ in range(2)]
        assert [r.status for _, r in held] == [200, 200]
        refused_conn, refused = _start(base, target)
        body = refused.read().decode()
        assert refused.status == 503 and 7 <= int(refused.headers["Retry-After"]) <= 10
        assert "maximum of 2 concurrent firmware downloads" in body and "Retry-After" in body
        refused_conn.close()
        for _ in range(5):  # metadata is never capped
            conn, r = _start(base, poll)
            assert r.status == 200 and r.read()
            conn.close()
        # one device goes away in the middle of its download: its slot is free for the next
        conn, r = held.pop()
        assert len(r.read(1000)) == 1000
        conn.close()
        held.append(_admitted(base, target))
        # kill -9 every worker, with the downloads in flight: the kernel frees their slots
        master = _serve_pid(home)
        for pid in _workers(master):
            os.kill(pid, signal.SIGKILL)
        for conn, _ in held:
            conn.close()
        for _ in range(200):  # gunicorn starts new workers; bounded
            if len(_workers(master)) == 2:
                break
            time.sleep(0.05)
        fresh = [_admitted(base, target) for _ in range(2)]
        for conn, _ in fresh:
            conn.close()


def test_a_group_cap_applies_to_the_address_its_devices_check_in_from(home, served):
    target, _ = served
    settings = load_settings(home, environ={})
    app = create_app(settings)
    db = bind_database(settings)
    dev = accepted(settings, SimDevice("d-cap"))
    services.tag("d-cap", "line-3", "it")
    device = services.authenticate(db, dev.token)
    services.record_checkin(settings, db, device, Checkin("1.0.0", {}), address="10.0.0.7")
    caps.set_cap("line-3", 1, 0, "it")
    lan = {"REMOTE_ADDR": "10.0.0.7"}
    client = app.test_client()
    first = client.get(target, environ_base=lan, buffered=False)
    assert first.status_code == 200
    second = client.get(target, environ_base=lan)
    assert second.status_code == 503 and "the group line-3 is serving its maximum of 1" in second.text
    assert int(second.headers["Retry-After"]) >= 30
    other = client.get(target, environ_base={"REMOTE_ADDR": "10.0.0.8"})  # not a line-3 device
    assert other.status_code == 200 and other.data == FIRMWARE
    first.close()  # the download ends (or the client leaves): the slot is free at once
    assert client.get(target, environ_base=lan).data == FIRMWARE
    caps.clear_cap("line-3", "it")
    held = [client.get(target, environ_base=lan, buffered=False) for _ in range(3)]
    assert all(r.status_code == 200 for r in held)
    for r in held:
        r.close()


def test_the_agent_waits_as_retry_after_says_then_downloads(home, served):
    import threading

    from tuf.api import exceptions as tuf_errors

    from agent._http import ResumingFetcher

    target, _ = served
    (home / "airlock.toml").write_text("download_max_concurrent = 1\ndownload_retry_after = 1\n"
                                       "download_max_bytes_per_second = 524288\n")
    with airlock_server(home, workers=1, threads=4) as base:
        conn, held = _start(base, target)
        assert held.status == 200
        impatient = ResumingFetcher(timeout=10)
        impatient.busy_wait_limit = 0
        with pytest.raises(tuf_errors.DownloadError) as info:
            impatient.fetch(base + target)
        assert not isinstance(info.value, tuf_errors.DownloadHTTPError) and "busy" in str(info.value)

        fetcher = ResumingFetcher(timeout=30)
        got: list[bytes] = []
        worker = threading.Thread(target=lambda: got.append(b"".join(fetcher.fetch(base + target))))
        worker.start()
        for _ in range(200):  # bounded: until the agent has been told to wait at least once
            if fetcher.busy_waits:
                break
            time.sleep(0.05)
        assert fetcher.busy_waits >= 1
        conn.close()  # the other device leaves: the slot comes free
        worker.join(timeout=60)
        assert got == [FIRMWARE]
