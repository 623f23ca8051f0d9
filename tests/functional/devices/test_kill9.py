"""SQLite under kill -9: the whole `airlock serve` process group is killed
while many devices check in.  Afterwards `PRAGMA integrity_check` passes,
every check-in the appliance acknowledged (answered 200) is stored, and the
import and audit records written before are all still there."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from tests.conftest import pin, run_airlock
from tests.functional.devices.client import ApiClient, SimDevice
from tests.support.server import free_port, wait_until_answers

TOKEN = "commissioning-sheet-token-4711"


def test_kill_9_during_checkins_keeps_every_acknowledged_one(tmp_path, sim):
    home = tmp_path / "home"
    assert run_airlock(home, "init").code == 0
    assert pin(lambda *a: run_airlock(home, *a), sim, tmp_path).code == 0
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    (tmp_path / "token").write_text(TOKEN)
    assert run_airlock(home, "devices", "auto-accept", "add", "--hardware", "plc-x",
                       "--token-file", tmp_path / "token").code == 0

    port = free_port()
    env = dict(os.environ, AIRLOCK_HOME=str(home), AIRLOCK_MDNS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{port}",
                             "--workers", "2", "--threads", "8"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(proc, base + "/healthz", what="airlock serve", timeout=30)
        devices = [SimDevice(f"kill9-{i}") for i in range(8)]
        client = ApiClient(base)
        for d in devices:
            r = client.post("/api/v1/enroll", d.enrollment(enrollment_token=TOKEN))
            assert r.status == 200, r.json
            d.token = r.json["token"]
        client.close()

        acknowledged = {d.device_id: 0 for d in devices}
        stop = threading.Event()

        def device_loop(d: SimDevice) -> None:
            c = ApiClient(base, timeout=5)
            for _ in range(2000):  # bounded; the kill ends it much sooner
                if stop.is_set():
                    break
                try:
                    r = c.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 5}}, d.auth())
                except (OSError, http.client.HTTPException):  # the kill cut the answer off
                    break
                if r.status == 200:
                    acknowledged[d.device_id] += 1
            c.close()

        threads = [threading.Thread(target=device_loop, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        time.sleep(1.5)
        os.killpg(proc.pid, signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    assert sum(acknowledged.values()) > 50, acknowledged
    con = sqlite3.connect(home / "airlock.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(con.execute("SELECT device_id, checkins FROM device"))
        imports = con.execute("SELECT COUNT(*) FROM import_record WHERE status = 'accepted'").fetchone()[0]
    finally:
        con.close()
    for device_id, count in acknowledged.items():
        assert stored[device_id] >= count, (device_id, stored[device_id], count)
    assert imports == 1
