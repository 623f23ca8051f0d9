"""Export speed and peak memory: ``airlock export`` of a history of check-in
samples and error reports, at two sizes, to show that memory stays flat as
the data grows (everything streams: SQLite cursors, a work folder, a tar
stream).

The history is written straight into a fresh home with SQL (``executemany``):
1,000 devices checking in over the last 20 hours, and reports from 100 of them
(a few bad devices send most reports) over the last 10 days.  ``airlock
export`` runs in its own process, which reports its peak RSS (``VmHWM``) as it
exits.  The reference is the time Python's sqlite3 takes merely to read and
parse the same samples: an export cannot be faster than reading its data.

``python -m tests.bench.export_bench`` runs it alone.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.common import REPO_ROOT, Scratch, airlock, log
from tests.bench.import_bench import _CHILD, _peak_rss

DEVICES = 1000
NOISY_DEVICES = 100  # devices that send the reports
SIZES = ((250_000, 25_000), (1_000_000, 100_000))  # (check-in samples, reports)
AIM_PEAK_RSS = 150e6  # bytes
AIM_FLAT = 1.25  # peak RSS at the big size / at the small size


def fill(home: Path, samples: int, reports: int) -> None:
    """Devices, raw check-in samples and error reports, inserted directly."""
    rng = random.Random(7)
    now = int(time.time())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))
    con = sqlite3.connect(home / "airlock.db")
    con.execute("PRAGMA synchronous = OFF")
    con.executemany(
        "INSERT INTO device (device_id, hardware, firmware, state, state_changed_at, state_changed_by, enrolled_at, "
        "last_enroll_at, last_seen, checkins, metrics, health) VALUES (?, 'plc-x', '1.0.0', 'accepted', ?, 'bench', "
        "?, ?, ?, ?, '{}', ?)",
        [(f"dev-{i:05d}", stamp, stamp, stamp, now - 60, samples // DEVICES, '["hot"]' if i % 97 == 0 else "[]")
         for i in range(DEVICES)])
    span = 20 * 3600  # seconds of raw history
    con.executemany(
        "INSERT INTO metric_sample (device, resolution, ts, data) VALUES (?, 0, ?, ?)",
        ((1 + i % DEVICES, now - span + (i * span) // samples,
          (f'{{"uptime_s":{i},"cpu_temp_c":{40 + i % 30},"mem_free_bytes":{50_000_000 + i % 1000},'
           f'"storage_free_bytes":900000000,"boot_count":3,"gauges":{{"fan_rpm":{1200 + i % 300}}},'
           f'"error_counters":{{"crc":{i % 7}}}}}'))
         for i in range(samples)))
    has_reports = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'report'").fetchone()
    if has_reports:
        message = "modbus timeout on port 2; retrying " * 4
        con.executemany(
            "INSERT INTO report (device, source, report_id, kind, severity, message, firmware, occurred_at, snapshot, "
            "created_at, created_ts) VALUES (?, 'device', ?, 'error', 'error', ?, '1.0.0', ?, '{}', ?, ?)",
            ((1 + rng.randrange(NOISY_DEVICES), f"{i:032x}", message, stamp, stamp,
              now - rng.randrange(10 * 86400)) for i in range(reports)))
    con.commit()
    con.close()


def read_reference(home: Path) -> float:
    """Seconds to read and parse every raw sample with sqlite3 and json."""
    con = sqlite3.connect(home / "airlock.db")
    t = time.perf_counter()
    for (data,) in con.execute("SELECT data FROM metric_sample WHERE resolution = 0 ORDER BY device, ts"):
        json.loads(data)
    seconds = time.perf_counter() - t
    con.close()
    return seconds


def timed_export(home: Path, dest: Path, log_file: Path) -> tuple[float, int, str]:
    hwm = log_file.with_suffix(".hwm")
    cmd = [sys.executable, "-c", _CHILD, str(hwm), "--home", str(home), "export", str(dest)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                          timeout=600)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"airlock export failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return seconds, _peak_rss(hwm), proc.stdout.strip()


def run_export_bench() -> list[tuple[str, str, str, str, str]]:
    figures = []
    with Scratch("airlock-export-bench-") as scratch:
        for samples, reports in SIZES:
            home = scratch / f"home-{samples}"
            airlock(home, "init")
            log(f"export: filling {samples:,} check-in samples and {reports:,} reports")
            fill(home, samples, reports)
            dest = scratch / f"usb-{samples}"
            dest.mkdir()
            seconds, rss, _ = timed_export(home, dest, scratch / f"export-{samples}.log")
            size = sum(p.stat().st_size for p in dest.iterdir())
            reference = read_reference(home)
            log(f"  airlock export: {seconds:.1f} s, {size / 1e6:.1f} MB, peak RSS {rss / 1e6:.0f} MB; "
                f"reading the samples: {reference:.1f} s")
            figures.append((samples, reports, seconds, rss, size, reference))
    rows = []
    for samples, reports, seconds, _rss, size, reference in figures:
        label = f"export {samples / 1e6:g}M samples + {reports / 1e3:g}k reports (s, {size / 1e6:.0f} MB file)"
        rows.append((label,
                     f"{seconds:.1f}", f"{reference:.1f} sqlite3+json read", f"{seconds / reference:.1f}", ""))
    (_, _, _, small_rss, _, _), (_, _, _, big_rss, _, _) = figures
    flat = big_rss / small_rss
    aim = (f"flat <= {AIM_FLAT} {'ok' if flat <= AIM_FLAT else 'MISSED'}; "
           f"< {AIM_PEAK_RSS / 1e6:.0f} {'ok' if big_rss < AIM_PEAK_RSS else 'MISSED'}")
    rows.append((f"export peak RSS, {SIZES[0][0] / 1e6:g}M -> {SIZES[1][0] / 1e6:g}M samples (MB)",
                 f"{small_rss / 1e6:.0f} -> {big_rss / 1e6:.0f}", "", f"{flat:.2f}", aim))
    return rows


if __name__ == "__main__":
    for row in run_export_bench():
        print("  ".join(row))
