"""Polls during a download storm: p50/p99 latency of ``timestamp.json``
polls while 200 simulated devices download firmware from ``airlock serve``
over throttled connections (each reads at a fixed slow rate, as a device on
a slow plant link would).  Aim: p99 under 100 ms for the polls, no errors.
Then the same storm with the download caps on (``CAPPED`` concurrent
downloads sharing ``CAP_BANDWIDTH``): devices over the cap are answered 503
with Retry-After, wait as told and ask again (not errors); the bytes served
stay within the cap and the polls stay fast.

Everything on 127.0.0.1; every loop is bounded in count and time."""

from __future__ import annotations

import http.client
import os
import threading
import time
from statistics import median

from server.settings import Settings
from tests.bench.common import Scratch, airlock, log, new_home
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

REPO = "bench"
DOWNLOADERS = 200
FIRMWARE_BYTES = 8 << 20  # 8 MiB: longer than the measurement at the throttled rate
RATE = 256 * 1024  # bytes per second per device
POLLERS = 4
WINDOW = 15.0  # seconds of measurement while the downloads run
DEFAULTS = Settings()


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def _throttled_download(port: int, path: str, stop: threading.Event, stats: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(1000):  # bounded: refused (503 + Retry-After), wait as told, ask again
            conn.request("GET", path)
            r = conn.getresponse()
            if r.status != 503:
                break
            r.read()
            conn.close()  # a fresh connection after the wait: the server closes idle ones after 5 s
            stats["refused"] += 1
            if stop.wait(float(r.headers.get("Retry-After", "1"))):
                return
        if r.status != 200:
            stats["errors"] += 1
            return
        stats["admitted"] += 1
        started = time.monotonic()
        got = 0
        while not stop.is_set():
            chunk = r.read(16384)
            if not chunk:
                break
            got += len(chunk)
            ahead = got / RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(min(ahead, 1.0))
        stats["bytes"] += got
    except OSError:
        stats["errors"] += 1
    finally:
        conn.close()


def _poll(port: int, path: str, stop: threading.Event, latencies: list[float], stats: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(100_000):  # bounded; the stop event ends it
        if stop.is_set():
            break
        t = time.perf_counter()
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                stats["errors"] += 1
            latencies.append((time.perf_counter() - t) * 1000)
        except OSError:
            stats["errors"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(0.02)
    conn.close()


CAPPED = 50  # concurrent downloads with the cap on
CAP_BANDWIDTH = CAPPED * RATE // 2  # bytes per second: half of what the capped downloads could take


def _storm(home, target: str, poll: str, threads: int | None, label: str) -> dict:
    """Polls idle, then during the storm; the figures."""
    with airlock_server(home, workers=None, threads=threads) as base:
        port = int(base.rsplit(":", 1)[1])
        # the same polls with the server idle: the reference
        idle: list[float] = []
        stop = threading.Event()
        stats = {"errors": 0, "bytes": 0, "refused": 0, "admitted": 0}
        pollers = [threading.Thread(target=_poll, args=(port, poll, stop, idle, stats)) for _ in range(POLLERS)]
        for t in pollers:
            t.start()
        time.sleep(3)
        stop.set()
        for t in pollers:
            t.join(timeout=15)

        log(f"download storm{label}: {DOWNLOADERS} devices at {RATE // 1024} KiB/s each, {POLLERS} pollers, "
            f"{WINDOW:.0f} s; airlock serve {DEFAULTS.worker_count} workers "
            f"x {threads or DEFAULTS.threads} threads")
        busy: list[float] = []
        stop = threading.Event()
        storm = {"errors": 0, "bytes": 0, "refused": 0, "admitted": 0}
        downloads = [threading.Thread(target=_throttled_download, args=(port, target, stop, storm), daemon=True)
                     for _ in range(DOWNLOADERS)]
        began = time.monotonic()
        for t in downloads:
            t.start()
        time.sleep(2)  # let every download get going
        pollers = [threading.Thread(target=_poll, args=(port, poll, stop, busy, storm)) for _ in range(POLLERS)]
        for t in pollers:
            t.start()
        time.sleep(WINDOW)
        stop.set()
        ran = time.monotonic() - began  # what the downloads had: starting 200 threads takes time too
        for t in pollers + downloads:
            t.join(timeout=40)
    rate = storm["bytes"] / ran / 1e6
    log(f"  polls idle p50 {median(idle):.1f} ms; during storm p50 {median(busy):.1f} ms, "
        f"p99 {_percentile(busy, 99):.1f} ms; {storm['errors']} errors; {storm['admitted']} downloads admitted, "
        f"{storm['refused']} refused with Retry-After; {rate:.1f} MB/s downloaded")
    return {"idle": idle, "busy": busy, "rate": rate, **storm}


def run_download_bench(threads: int | None = None) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(measure, airlock, reference, ratio, aim)`` for the table: the
    storm as `airlock serve` runs by default (no caps), then with the
    download caps on."""
    with Scratch("airlock-bench-downloads-") as scratch:
        sim = RepoSim(REPO)
        home = new_home(scratch / "home", REPO, sim.first_root())
        sim.add_target("fw/big.bin", os.urandom(1 << 20) * (FIRMWARE_BYTES >> 20), version="2.0.0")
        sim.publish()
        airlock(home, "import", str(sim.write_bundle(scratch / "usb")))
        tf = sim.targets.signed.targets["fw/big.bin"]
        target = f"/repos/{REPO}/targets/fw/{tf.hashes['sha256']}.big.bin"
        poll = f"/repos/{REPO}/metadata/timestamp.json"
        plain = _storm(home, target, poll, threads, "")
        (home / "airlock.toml").write_text(f"download_max_concurrent = {CAPPED}\n"
                                           f"download_max_bytes_per_second = {CAP_BANDWIDTH}\n"
                                           "download_retry_after = 5\n")
        capped = _storm(home, target, poll, threads, f" with caps ({CAPPED} downloads, {CAP_BANDWIDTH / 1e6:.1f} MB/s)")
    rows = []
    for name, run in (("", plain), (f", capped at {CAPPED}", capped)):
        busy, idle = run["busy"], run["idle"]
        p99 = _percentile(busy, 99)
        rows += [
            (f"timestamp.json poll p50 during 200 downloads{name} (ms)", f"{median(busy):.1f}",
             f"{median(idle):.1f} idle", f"{median(busy) / median(idle):.1f}", ""),
            (f"timestamp.json poll p99 during 200 downloads{name} (ms)", f"{p99:.1f}",
             f"{_percentile(idle, 99):.1f} idle", f"{p99 / _percentile(idle, 99):.1f}",
             f"< 100 {'ok' if p99 < 100 else 'MISSED'}"),
            (f"errors during the download storm{name}", str(run["errors"]), "", "",
             "0 ok" if run["errors"] == 0 else "0 MISSED"),
        ]
    rows += [
        ("firmware bytes served during the storm (MB/s)", f"{plain['rate']:.1f}",
         f"{DOWNLOADERS * RATE / 1e6:.1f} asked", "", ""),
        (f"firmware bytes served, capped at {CAPPED} x {CAP_BANDWIDTH // CAPPED // 1024} KiB/s (MB/s)",
         f"{capped['rate']:.1f}", f"{CAP_BANDWIDTH / 1e6:.1f} cap", f"{capped['rate'] / (CAP_BANDWIDTH / 1e6):.2f}",
         f"<= cap {'ok' if capped['rate'] <= CAP_BANDWIDTH / 1e6 * 1.02 else 'MISSED'}"),
        (f"downloads admitted / refused with Retry-After, capped at {CAPPED}",
         f"{capped['admitted']} / {capped['refused']}", "", "",
         f"admitted <= {CAPPED} at a time"),
    ]
    return rows


if __name__ == "__main__":
    import sys

    for row in run_download_bench(int(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(" | ".join(row))
