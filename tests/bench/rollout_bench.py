"""Rollout benchmark: a bad release under a three-wave rollout across
``DEVICES`` (20,000) devices checking in as fast as ``CLIENTS`` connections
allow.  Devices offered the release report ``downloading`` and then
``failure``; the rollout must halt by itself in wave 1.

Reports the time from the approval to the halt (it includes the time for
wave 1's devices to come round and the ``rollout_check_interval`` of the
background evaluation, left at its default), check-in p50/p99 latency
meanwhile, and how many devices outside wave 1 were offered the release
(must be 0).  The fleet is written straight into the database (accepted,
with real token hashes) so that the run measures the rollout, not 20,000
enrollments.  Bounded: at most ``LIMIT`` seconds of check-ins.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
import uuid

from tests.bench.common import Scratch, airlock, log
from tests.conftest import pin
from tests.functional.devices.client import ApiClient, utc_now
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

DEVICES = 20_000
CLIENTS = 32  # connections checking in
LIMIT = 300.0  # seconds
WAVES = ("1%", "10%", "100%")
AIM_P99_MS = 500.0


def _fleet(db_path, n: int) -> list[str]:
    tokens = [secrets.token_urlsafe(32) for _ in range(n)]
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    con = sqlite3.connect(db_path, timeout=30)
    try:
        with con:
            con.executemany(
                "INSERT INTO device (device_id, hardware, firmware, state, state_changed_at, state_changed_by, "
                "token_hash, token_issued_at, enrolled_at, last_enroll_at) VALUES (?, 'plc-x', '1.0.0', 'accepted', "
                "?, 'bench', ?, ?, ?, ?)",
                [(f"fleet-{i:05d}", now, hashlib.sha256(t.encode()).hexdigest(), now, now, now)
                 for i, t in enumerate(tokens)])
    finally:
        con.close()
    return tokens


def _state(db_path) -> str | None:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT state FROM rollout ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None
    finally:
        con.close()


def run_rollout_bench(devices: int = DEVICES) -> list[tuple[str, str, str, str, str]]:
    with Scratch("airlock-bench-rollout-") as scratch:
        home = scratch / "home"
        airlock(home, "init")
        sim = RepoSim("acme")
        pin(lambda *a: _ok(airlock(home, *a)), sim, scratch)
        sim.add_target("plc-x/fw-2.0.0.bin", b"bad build" * 100, hardware=("plc-x",), version="2.0.0")
        sim.publish()
        airlock(home, "import", str(sim.write_bundle(scratch / "usb")))
        tokens = _fleet(home / "airlock.db", devices)
        with airlock_server(home, workers=None, threads=None) as base:
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            stop = threading.Event()
            cursor = [0]

            def worker():
                api = ApiClient(base, timeout=30)
                mine: list[float] = []
                try:
                    while not stop.is_set():
                        with lock:
                            i = cursor[0] % devices
                            cursor[0] += 1
                        auth = {"Authorization": f"Bearer {tokens[i]}"}
                        t0 = time.perf_counter()
                        r = api.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 1000}}, auth)
                        mine.append((time.perf_counter() - t0) * 1e3)
                        if r.status != 200:
                            raise RuntimeError(f"checkin {r.status} {r.body[:120]!r}")
                        offer = r.json.get("update")
                        if offer:
                            for step in ("downloading", "failure"):
                                body = {"report_id": str(uuid.uuid4()), "release_id": offer["release_id"],
                                        "step": step, "at": utc_now()}
                                if step == "failure":
                                    body["reason"] = "bench: flash write failed"
                                api.post("/api/v1/updates", body, auth)
                except Exception as exc:  # noqa: BLE001 - counted
                    with lock:
                        errors.append(repr(exc)[:200])
                finally:
                    api.close()
                    with lock:
                        latencies.extend(mine)

            threads = [threading.Thread(target=worker, daemon=True) for _ in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(3)  # warm: check-ins flowing before the approval
            log(f"rollout: {devices:,} devices checking in over {CLIENTS} connections; approving a bad release "
                f"in waves {', '.join(WAVES)}")
            waves = [a for w in WAVES for a in ("--wave", w)]
            approved = time.monotonic()
            airlock(home, "releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x", *waves,
                    "--soak", "10m", "--min-sample", "10")
            halted_after = None
            while time.monotonic() - approved < LIMIT:
                if _state(home / "airlock.db") == "halted":
                    halted_after = time.monotonic() - approved
                    break
                time.sleep(0.2)
            stop.set()
            for t in threads:
                t.join(60)
            shown = json.loads(airlock(home, "rollouts", "show", "1", "--json"))
        con = sqlite3.connect(home / "airlock.db")
        try:
            outside = con.execute("SELECT COUNT(*) FROM update_offer WHERE release_id = 1 AND wave <> 1").fetchone()[0]
        finally:
            con.close()
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] if ordered else float("nan")
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
    log(f"  halted after {halted_after}; {shown['halt_reason']}; check-in p50 {p50:.1f} ms p99 {p99:.1f} ms; "
        f"{len(errors)} errors; {outside} offers outside wave 1")
    ok = halted_after is not None and outside == 0 and not errors
    return [
        (f"rollout: approval to automatic halt, {devices:,} devices, waves {'/'.join(WAVES)} (s)",
         f"{halted_after:.1f}" if halted_after is not None else f"> {LIMIT:.0f}",
         f"wave 1: {shown['waves'][0]['size']} devices", "", "halts " + ("ok" if ok else "MISSED")),
        ("rollout: check-ins meanwhile, p50 / p99 (ms)", f"{p50:.1f} / {p99:.1f}", f"{len(ordered):,} check-ins",
         "", f"p99 < {AIM_P99_MS:.0f} " + ("ok" if p99 < AIM_P99_MS else "MISSED")),
        ("rollout: devices outside wave 1 offered the bad release; errors", f"{outside}; {len(errors)}", "", "",
         "ok" if outside == 0 and not errors else "MISSED"),
    ]


def _ok(out: str):
    class _R:  # pin() wants a result with .code
        code = 0
    return _R()


if __name__ == "__main__":
    for row in run_rollout_bench():
        print("  ".join(row))
