"""Device API benchmarks: ``run_device_benches()`` returns table rows.

1. Burst: ``BURST_DEVICES`` simulated devices, each with its own Ed25519
   key, arrive at random within ``BURST_WINDOW`` seconds (as after a power
   cut); each enrolls (accepted at once by an auto-accept rule) and checks in
   once.  p50/p99 latency of both requests, and every non-2xx or socket error.
2. Sustained check-ins per second: ``wrk`` with a Lua script that rotates
   over the burst's tokens, against ``airlock serve`` with its default sizing
   (two gthread workers per core) on SQLite; the inventory is padded to
   ``INVENTORY`` devices first.

Everything runs on loopback, bounded in count and time (about 1.5 minutes).
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.serve_worker import DEVICE_THREADS
from server.settings import Settings
from tests.bench.common import Scratch, airlock, ensure_tools, log
from tests.bench.wrk import WrkResult, parse
from tests.functional.devices.client import ApiClient, SimDevice
from tests.support.server import airlock_server

DEFAULTS = Settings()
WORKERS, THREADS = DEFAULTS.worker_count, DEFAULTS.threads  # what `airlock serve` starts here by default
BURST_DEVICES = 5000
BURST_WINDOW = 60.0  # seconds over which the devices arrive
BURST_CLIENTS = 64  # client threads (connections) for the burst
INVENTORY = 50_000  # devices in the database during the sustained run
WRK_SECONDS = 10
WRK_CONNECTIONS = 64
AIM_CHECKINS = 2000  # per second
AIM_BURST_P99 = 1000.0  # ms
ENROLLMENT_TOKEN = "bench-commissioning-" + secrets.token_hex(8)

CHECKIN_BODY = ('{"firmware":"1.0.0","metrics":{"uptime_s":86400,"boot_count":3,"last_reset_reason":"power-on",'
                '"cpu_temp_c":48.5,"mem_free_bytes":50000000,"storage_free_bytes":700000000,'
                '"error_counters":{"crc":1,"i2c":0},"gauges":{"fan_rpm":2900,"supply_v":23.8}}}')

LUA = """
local tokens = {}
local i = 0
local body = [[%s]]
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  math.randomseed(os.time() + #args)
  i = math.random(#tokens)
end
function request()
  i = i %% #tokens + 1
  return wrk.format("POST", "/api/v1/checkin",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]}, body)
end
""" % CHECKIN_BODY  # noqa: UP031 (Lua is full of braces; %s reads best)


@dataclass
class BurstFigures:
    devices: int
    window: float  # seconds
    seconds: float  # from the first arrival to the last answer
    enroll_ms: list[float] = field(default_factory=list)
    checkin_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def burst(base: str, devices: int = BURST_DEVICES, window: float = BURST_WINDOW,
          clients: int = BURST_CLIENTS) -> BurstFigures:
    fleet = [SimDevice(f"burst-{i:05d}") for i in range(devices)]
    bodies = [d.enrollment(enrollment_token=ENROLLMENT_TOKEN) for d in fleet]
    arrivals = sorted(random.uniform(0, window) for _ in range(devices))
    figures = BurstFigures(devices, window, 0.0)
    lock = threading.Lock()
    next_index = [0]
    start = time.monotonic() + 0.5
    deadline = start + window + 60  # bounded even if the server stalls

    def worker():
        api = ApiClient(base, timeout=30)
        try:
            while True:
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= devices or time.monotonic() > deadline:
                    return
                delay = start + arrivals[i] - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    t0 = time.perf_counter()
                    r = api.post("/api/v1/enroll", bodies[i])
                    t1 = time.perf_counter()
                    if r.status != 200:
                        raise RuntimeError(f"enroll {r.status} {r.body[:120]!r}")
                    token = r.json["token"]
                    r = api.post("/api/v1/checkin", raw=CHECKIN_BODY.encode(),
                                 headers={"Authorization": f"Bearer {token}"})
                    t2 = time.perf_counter()
                    if r.status != 200:
                        raise RuntimeError(f"checkin {r.status} {r.body[:120]!r}")
                    with lock:
                        figures.enroll_ms.append((t1 - t0) * 1e3)
                        figures.checkin_ms.append((t2 - t1) * 1e3)
                        figures.tokens.append(token)
                except Exception as exc:  # noqa: BLE001 - every failure is a counted error
                    api.close()
                    with lock:
                        figures.errors.append(repr(exc)[:200])
        finally:
            api.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 5))
    figures.seconds = time.monotonic() - start
    missing = devices - len(figures.tokens) - len(figures.errors)
    if missing > 0:
        figures.errors.extend(["not done within the time limit"] * missing)
    return figures


def pad_inventory(db_path: Path, total: int) -> int:
    """Insert accepted devices (with unusable token hashes) up to ``total`` rows."""
    con = sqlite3.connect(db_path, timeout=30)
    try:
        have = con.execute("SELECT COUNT(*) FROM device").fetchone()[0]
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        rows = [(f"inventory-{i:06d}", "plc-x", "1.0.0", "accepted", now, "bench", secrets.token_hex(32), now, now)
                for i in range(max(0, total - have))]
        with con:
            con.executemany(
                "INSERT INTO device (device_id, hardware, firmware, state, state_changed_at, state_changed_by, "
                "token_hash, enrolled_at, last_enroll_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return have + len(rows)
    finally:
        con.close()


def stored_checkins(db_path: Path) -> int:
    con = sqlite3.connect(db_path, timeout=30)
    try:
        return con.execute("SELECT COALESCE(SUM(checkins), 0) FROM device").fetchone()[0]
    finally:
        con.close()


def sustained(wrk: str, base: str, tokens: list[str], scratch: Path, *, seconds: int = WRK_SECONDS,
              connections: int = WRK_CONNECTIONS, threads: int = 2) -> WrkResult:
    import subprocess

    (scratch / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (scratch / "checkin.lua").write_text(LUA)
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency",
           "-s", str(scratch / "checkin.lua"), base + "/api/v1/checkin", "--", str(scratch / "tokens.txt")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return parse(r.stdout)


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def run_device_benches(*, devices: int = BURST_DEVICES, window: float = BURST_WINDOW,
                       seconds: int = WRK_SECONDS) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(measure, airlock, reference, ratio, aim)`` for the benchmark table."""
    tools = ensure_tools({"wrk": "wrk"})
    with Scratch("airlock-bench-devices-") as scratch:
        home = scratch / "home"
        airlock(home, "init")
        (scratch / "token").write_text(ENROLLMENT_TOKEN)
        airlock(home, "devices", "auto-accept", "add", "--hardware", "plc-x", "--token-file", str(scratch / "token"))
        with airlock_server(home, workers=None, threads=None) as base:
            log(f"device burst: {devices} devices arrive within {window:.0f} s, enroll and check in "
                f"({WORKERS} workers x {THREADS} threads, check-ins and enrollments on {DEVICE_THREADS} of their own)")
            b = burst(base, devices, window)
            log(f"  enroll p50 {percentile(b.enroll_ms, 50):.1f} ms p99 {percentile(b.enroll_ms, 99):.1f} ms; "
                f"check-in p50 {percentile(b.checkin_ms, 50):.1f} ms p99 {percentile(b.checkin_ms, 99):.1f} ms; "
                f"{len(b.errors)} errors")
            inventory = pad_inventory(home / "airlock.db", INVENTORY)
            log(f"sustained check-ins: wrk {seconds} s, {WRK_CONNECTIONS} connections rotating {len(b.tokens)} "
                f"tokens; {inventory} devices in the inventory")
            before = stored_checkins(home / "airlock.db")
            warm = sustained(tools["wrk"], base, b.tokens, scratch, seconds=2)
            s = sustained(tools["wrk"], base, b.tokens, scratch, seconds=seconds)
            stored = stored_checkins(home / "airlock.db") - before
            answered = warm.requests + s.requests - warm.errors - s.errors
            log(f"  {s.requests_per_second:,.0f} check-ins/s, p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms, "
                f"{s.errors} errors; {stored} stored for {answered} answered")
            locked = "database is locked" in (home / "serve.log").read_text()
    lost = max(0, answered - stored)  # a 200 that did not store its check-in
    p99 = max(percentile(b.enroll_ms, 99), percentile(b.checkin_ms, 99))
    return [
        (f"device check-ins/s sustained ({WORKERS} workers, SQLite, {inventory:,} devices)",
         f"{s.requests_per_second:,.0f}", f"p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms", "",
         f">= {AIM_CHECKINS:,} {_verdict(s.requests_per_second >= AIM_CHECKINS)}"),
        ("  check-in errors (non-2xx, socket; 200s not stored; 'database is locked')",
         f"{s.errors + warm.errors}; {lost}; {'yes' if locked else 'no'}", "", "",
         _verdict(s.errors + warm.errors == 0 and lost == 0 and not locked)),
        (f"burst: {devices:,} devices in {window:.0f} s, enroll p50/p99 (ms)",
         f"{percentile(b.enroll_ms, 50):.1f} / {percentile(b.enroll_ms, 99):.1f}", "", "",
         f"p99 < {AIM_BURST_P99:.0f} {_verdict(percentile(b.enroll_ms, 99) < AIM_BURST_P99)}"),
        ("burst: first check-in p50/p99 (ms)",
         f"{percentile(b.checkin_ms, 50):.1f} / {percentile(b.checkin_ms, 99):.1f}", "", "",
         f"p99 < {AIM_BURST_P99:.0f} {_verdict(percentile(b.checkin_ms, 99) < AIM_BURST_P99)}"),
        ("burst: errors (of enroll + check-in pairs)", f"{len(b.errors)} of {devices:,}",
         f"done in {b.seconds:.0f} s", "", _verdict(not b.errors and p99 < AIM_BURST_P99)),
    ]


if __name__ == "__main__":
    for row in run_device_benches():
        print("  ".join(row))
