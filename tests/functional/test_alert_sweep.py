"""`airlock serve` sweeps for alerts by itself, in one worker at a time:
metadata about to expire opens one alert, logged once, counted in
/metrics."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import urllib.request
from pathlib import Path

from tests.conftest import pin
from tests.support.server import airlock_server


def _lock_holder(path: Path) -> int | None:
    """The pid holding an flock on ``path``, from /proc/locks."""
    inode = os.stat(path).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            return int(fields[4])
    return None


def test_serve_sweeps_in_one_worker(airlock, sim, tmp_path, home):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    # the simulator's timestamp expires in 7 days: within a 30-day warning
    (home / "airlock.toml").write_text("alert_sweep_interval = 1\nalert_metadata_expiry_warning = 2592000\n")
    with airlock_server(home, workers=2, threads=4) as base:
        wanted = 'airlock_alerts_open{kind="metadata_expiring"} 1'
        for _ in range(100):  # bounded: the first sweep runs as a worker starts
            text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
            if wanted in text:
                break
            time.sleep(0.1)
        assert wanted in text
        time.sleep(2.5)  # more sweeps by then (every second); none may open it again
        log = (home / "serve.log").read_text()
        assert log.count("alert opened: kind=metadata_expiring subject=repository:acme") == 1
        # kill -9 the sweeping worker: another takes the lock over and sweeps
        leader = _lock_holder(home / "run" / "alert-sweep.lock")
        os.kill(leader, signal.SIGKILL)
        con = sqlite3.connect(home / "airlock.db")
        with con:
            con.execute("UPDATE alert SET closed_at = '2026-01-01T00:00:00+00:00'")  # as if it had been resolved
        con.close()
        for _ in range(100):  # bounded: the condition persists, so the new leader opens it again
            if _lock_holder(home / "run" / "alert-sweep.lock") not in (None, leader) and \
                    (home / "serve.log").read_text().count("alert opened: kind=metadata_expiring") == 2:
                break
            time.sleep(0.1)
        assert (home / "serve.log").read_text().count("alert opened: kind=metadata_expiring") == 2
    listed = airlock("alerts")
    assert listed.code == 0 and "metadata_expiring" in listed.out and "timestamp metadata expires" in listed.out
