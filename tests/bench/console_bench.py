"""Console and admin-API benchmark: the device list at 50,000 devices.

The inventory is padded to ``INVENTORY`` devices (a third of them another
model, some with a health flag, last check-ins spread over a day), then one
client asks, one request at a time, for a mix of list pages (first page,
deep pages, each filter, each sort) from ``airlock serve`` with its default
sizing: the console's ``/devices`` page with a session cookie, and
``GET /api/v1/admin/devices`` with HTTP Basic.  p50 and p95 latency of each,
and the Overview's.  Loopback only, bounded in count (``ROUNDS`` x the mix).
"""

from __future__ import annotations

import base64
import sqlite3
import time

from tests.bench.common import Scratch, airlock, log
from tests.bench.devices_bench import pad_inventory
from tests.functional.console.browser import Browser
from tests.functional.devices.client import ApiClient
from tests.support.server import airlock_server

INVENTORY = 50_000
ROUNDS = 10
AIM_P95 = 300.0  # ms
PASSWORD = "bench admin password"
QUERIES = ["", "?page=250", "?state=offline&page=100", "?state=online", "?hardware=gw-1&sort=firmware&page=50",
           "?flag=hot", "?prefix=inventory-04", "?sort=-last_seen&page=20", "?tag=hall-a", "?per_page=500"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _spread(db_path) -> None:
    con = sqlite3.connect(db_path, timeout=30)
    try:
        with con:
            con.execute("UPDATE device SET last_seen = CAST(strftime('%s', 'now') AS INTEGER) - (id * 7919) % 86400, "
                        "hardware = CASE WHEN id % 3 = 0 THEN 'gw-1' ELSE 'plc-x' END, "
                        "health = CASE WHEN id % 17 = 0 THEN '[\"hot\"]' ELSE '[]' END")
            con.execute("INSERT INTO device_tag (device, tag) SELECT id, 'hall-a' FROM device WHERE id % 50 = 0")
    finally:
        con.close()


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def run_console_bench() -> list[tuple[str, str, str, str, str]]:
    """Rows ``(measure, airlock, reference, ratio, aim)`` for the benchmark table."""
    with Scratch("airlock-bench-console-") as scratch:
        home = scratch / "home"
        (scratch / "pw").write_text(PASSWORD + "\n")
        airlock(home, "init", "--admin", "ada", "--password-file", str(scratch / "pw"))
        devices = pad_inventory(home / "airlock.db", INVENTORY)
        _spread(home / "airlock.db")
        log(f"console: {devices:,} devices; {ROUNDS} rounds of {len(QUERIES)} list queries, page and API")
        page_ms, api_ms, overview_ms = [], [], []
        with airlock_server(home, workers=None, threads=None) as base:
            browser = Browser(base)
            assert browser.login("ada", PASSWORD).status == 303
            api = ApiClient(base)
            auth = {"Authorization": "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()}
            assert api.get("/api/v1/admin/devices", auth).status == 200  # the one scrypt, outside the figures
            for _ in range(ROUNDS):
                for q in QUERIES:
                    page_ms.append(_timed(lambda q=q: _ok(browser.get("/devices" + q).status)))
                    api_ms.append(_timed(lambda q=q: _ok(api.get("/api/v1/admin/devices" + q, auth).status)))
                overview_ms.append(_timed(lambda: _ok(browser.get("/overview").status)))
            api.close()
    rows = []
    for label, values in ((f"console /devices page, {devices:,} devices, p50 / p95 (ms)", page_ms),
                          (f"GET /api/v1/admin/devices, {devices:,} devices, p50 / p95 (ms)", api_ms),
                          (f"console /overview, {devices:,} devices, p50 / p95 (ms)", overview_ms)):
        p95 = percentile(values, 95)
        log(f"  {label}: {percentile(values, 50):.0f} / {p95:.0f}")
        rows.append((label, f"{percentile(values, 50):.0f} / {p95:.0f}", f"{len(values)} requests", "",
                     f"p95 < {AIM_P95:.0f} {'ok' if p95 < AIM_P95 else 'MISSED'}"))
    return rows


def _ok(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"the console answered {status}")


if __name__ == "__main__":
    for row in run_console_bench():
        print("  ".join(row))
