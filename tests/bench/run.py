"""Airlock benchmarks: ``python -m tests.bench.run`` (``make bench``).

Prints one table: import throughput and peak memory against hashlib, and
``timestamp.json`` requests per second against nginx.  Progress goes to
stderr; the table to stdout.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime

from tests.bench import import_bench, serve_bench
from tests.bench.common import Scratch, log, which

AIM_IMPORT_RATIO = 0.8
AIM_PEAK_RSS = 150e6


def _version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "?"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def table(imp: import_bench.ImportFigures | None, srv: serve_bench.ServeFigures | None) -> str:
    rows = [("measure", "airlock", "reference", "ratio", "aim")]
    if imp:
        for run in (imp.small, imp.big):
            ratio = run.gbps / run.hash_gbps
            aim = f">= {AIM_IMPORT_RATIO:.2f} {_verdict(ratio >= AIM_IMPORT_RATIO)}" if run is imp.big else ""
            lo, hi = run.spread(run.seconds)
            hlo, hhi = run.spread(run.hash_seconds)
            rows.append((f"import {run.bytes / 1e9:.1f} GB, {run.files} files (GB/s)",
                         f"{run.gbps:.2f} ({lo:.2f}-{hi:.2f})", f"{run.hash_gbps:.2f} ({hlo:.2f}-{hhi:.2f}) hashlib",
                         f"{ratio:.2f}", aim))
            rows.append((f"import {run.bytes / 1e9:.1f} GB vs durable disk write (GB/s)", f"{run.gbps:.2f}",
                         f"{run.write_gbps:.2f} write+fdatasync", f"{run.gbps / run.write_gbps:.2f}", ""))
        for run in (imp.small, imp.big):
            peak = max(run.peak_rss)
            rows.append((f"import {run.bytes / 1e9:.1f} GB, peak RSS (MB)", f"{peak / 1e6:.0f}", "", "",
                         f"< {AIM_PEAK_RSS / 1e6:.0f} {_verdict(peak < AIM_PEAK_RSS)}"))
    if srv:
        a, n, f, fw = srv.airlock, srv.nginx, srv.flask, srv.flask_airlock_worker
        best = srv.best_flask
        label = f"timestamp.json ({srv.size} B)"
        ratio = a.requests_per_second / best.requests_per_second
        aim = serve_bench.AIM_FLASK_RATIO
        rows.append((f"{label} req/s", f"{a.requests_per_second:,.0f}",
                     f"{f.requests_per_second:,.0f} Flask send_from_directory",
                     f"{a.requests_per_second / f.requests_per_second:.2f}", ""))
        rows.append(("  same Flask app under airlock's worker class", "", f"{fw.requests_per_second:,.0f}",
                     f"{a.requests_per_second / fw.requests_per_second:.2f}",
                     f">= {aim:.1f} x the faster {_verdict(ratio >= aim)}"))
        rows.append(("  airlock's own Flask view (the path before)", "", f"{srv.view.requests_per_second:,.0f}",
                     f"{a.requests_per_second / srv.view.requests_per_second:.2f}", ""))
        rows.append(("  nginx on the same tree", "", f"{n.requests_per_second:,.0f} nginx",
                     f"{a.requests_per_second / n.requests_per_second:.2f}", ""))
        for name, attr in (("p50", "p50_ms"), ("p99", "p99_ms")):
            rows.append((f"{label} {name} latency (ms)", f"{getattr(a, attr):.2f}",
                         f"{getattr(f, attr):.2f} Flask, {getattr(n, attr):.2f} nginx",
                         f"{getattr(a, attr) / getattr(f, attr):.2f}", ""))
        errors = (a.errors, f.errors, fw.errors, n.errors, srv.view.errors)
        rows.append(("failed requests (socket errors, non-2xx)", str(a.errors),
                     f"{f.errors}+{fw.errors} Flask, {n.errors} nginx", "", _verdict(not any(errors))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [_aligned(r, widths) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _aligned(row, widths) -> str:
    """One table line: the label left-aligned, the figures right-aligned."""
    cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
    return "  ".join(cells).rstrip()


def plain_table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    lines = [_aligned([str(c) for c in r], widths) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def header(imp, srv) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [(f"Airlock benchmarks, {now}: {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{platform.system()} {platform.release()}")]
    if imp:
        lines.append(f"import: median (lowest-highest) of {imp.repeat} rounds, one `airlock import` process per "
                     f"bundle into a fresh home; page cache {imp.cache}")
    if srv:
        nginx = _version([which("nginx") or "nginx", "-v"]).replace("nginx version: ", "")
        lines.append(f"serve: wrk {srv.wrk_args}; airlock serve {srv.workers} workers x {srv.threads} threads "
                     f"(gthread) vs a plain Flask app (send_from_directory) under the same gunicorn settings vs "
                     f"{nginx} {srv.workers} workers, same HOME/public tree")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("import", "serve", "devices", "herd", "downloads", "export", "console",
                                      "rollout", "tls"),
                   help="run one benchmark only")
    p.add_argument("--gb", type=float, default=float(os.environ.get("BENCH_IMPORT_GB", "3")),
                   help="size of the big import bundle in GB, in whole 256 MiB files, at least 3 "
                   "(env BENCH_IMPORT_GB, default 3)")
    p.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")),
                   help="rounds of the import benchmark (env BENCH_REPEAT, default 3)")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_WRK_SECONDS", "10")),
                   help="wrk duration per server (env BENCH_WRK_SECONDS, default 10)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--herd-devices", type=int, default=int(os.environ.get("BENCH_HERD_DEVICES", "50000")),
                   help="devices in the herd (env BENCH_HERD_DEVICES, default 50000)")
    p.add_argument("--herd-window", type=float, default=float(os.environ.get("BENCH_HERD_WINDOW", "60")),
                   help="seconds within which the herd comes back (env BENCH_HERD_WINDOW, default 60)")
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                   help="run the herd on this database instead of the home's SQLite file (env BENCH_DATABASE_URL)")
    p.add_argument("--herd-engines", default=os.environ.get("BENCH_HERD_ENGINES", "sqlite,postgresql"),
                   help="databases the herd runs on, one after the other: sqlite, postgresql (a private cluster "
                   "started for the run) or both (env BENCH_HERD_ENGINES, default both); --database-url overrides")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.gb <= 0 or args.repeat < 1 or args.seconds < 1 or args.connections < 1 or args.herd_devices < 1 \
            or args.herd_window <= 0:
        p.error("--gb, --repeat, --seconds, --connections, --herd-devices and --herd-window must be positive")

    # SIGTERM (make interrupted, CI timeout) unwinds like Ctrl-C: servers stopped, temp folders removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    imp = srv = None
    device_rows: list = []
    with Scratch() as scratch:
        log(f"scratch folder {scratch}")
        if args.only in (None, "import"):
            imp = import_bench.run(scratch, args.gb, args.repeat)
        if args.only in (None, "serve"):
            srv = serve_bench.run(scratch, seconds=args.seconds, connections=args.connections)
        if args.only in (None, "devices"):
            from tests.bench.devices_bench import run_device_benches

            device_rows = run_device_benches(seconds=args.seconds)
        if args.only in (None, "herd"):
            from tests.bench.herd_bench import run_herd_bench

            device_rows += run_herd_bench(devices=args.herd_devices, window=args.herd_window,
                                          database_url=args.database_url,
                                          engines=tuple(e.strip() for e in args.herd_engines.split(",") if e.strip()))
        if args.only in (None, "downloads"):
            from tests.bench.download_bench import run_download_bench

            device_rows += run_download_bench()
        if args.only in (None, "export"):
            from tests.bench.export_bench import run_export_bench

            device_rows += run_export_bench()
        if args.only in (None, "tls"):
            from tests.bench.tls_bench import run as run_tls_bench

            device_rows += run_tls_bench(scratch, seconds=args.seconds, connections=args.connections)
        if args.only in (None, "console"):
            from tests.bench.console_bench import run_console_bench

            device_rows += run_console_bench()
        if args.only in (None, "rollout"):
            from tests.bench.rollout_bench import run_rollout_bench

            device_rows += run_rollout_bench()
    print(header(imp, srv))
    if imp or srv:
        print()
        print(table(imp, srv))
    if device_rows:
        print()
        print(plain_table([("measure", "airlock", "reference", "ratio", "aim"), *device_rows]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"import": asdict(imp) if imp else None, "serve": asdict(srv) if srv else None,
                       "devices": device_rows}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
