"""`airlock serve` sweeps for alerts by itself, in one worker at a time:
metadata about to expire opens one alert, logged once, counted in
/metrics."""

from __future__ import annotations

import time
import urllib.request

from tests.conftest import pin
from tests.support.server import airlock_server


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
    listed = airlock("alerts")
    assert listed.code == 0 and "metadata_expiring" in listed.out and "timestamp metadata expires" in listed.out
