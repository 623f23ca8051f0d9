"""``timestamp.json`` requests per second: ``airlock serve`` against a plain
Flask app serving the same file with ``send_from_directory`` under the same
gunicorn settings (with gunicorn's own gthread worker, and with Airlock's),
and against nginx serving the same published tree (``HOME/public``)."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path

from server.settings import Settings
from tests.bench.common import airlock, ensure_tools, log, new_home
from tests.bench.flask_reference import flask_reference
from tests.bench.nginx import nginx_server
from tests.bench.wrk import WrkResult, run_wrk
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

REPO = "bench"
PATH = f"/repos/{REPO}/metadata/timestamp.json"
VIEW_PATH = f"/repos/{REPO}/metadata/timestamp%2Ejson"  # encoded: only the Flask view answers it
DEFAULTS = Settings()
WORKERS, THREADS = DEFAULTS.worker_count, DEFAULTS.threads  # what `airlock serve` runs by default (nginx: as many)
WARMUP_SECONDS = 2
AIM_FLASK_RATIO = 2.0  # the poll path against the faster plain Flask reference
AIRLOCK_WORKER = "appliance.serve_worker.HeaderDeadlineWorker"


@dataclass
class ServeFigures:
    wrk_args: str
    workers: int
    threads: int
    size: int  # bytes of timestamp.json
    airlock: WrkResult
    nginx: WrkResult
    flask: WrkResult  # plain Flask send_from_directory, gunicorn's gthread worker
    flask_airlock_worker: WrkResult  # the same app under Airlock's worker class
    view: WrkResult  # airlock serve's Flask view, as every poll was answered before the poll path

    @property
    def best_flask(self) -> WrkResult:
        return max(self.flask, self.flask_airlock_worker, key=lambda r: r.requests_per_second)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def _published_home(scratch: Path) -> Path:
    sim = RepoSim(REPO)
    home = new_home(scratch / "home-serve", REPO, sim.first_root())
    sim.add_target("fw/plc-x-1.0.0.bin", b"firmware" * 4096, version="1.0.0")
    sim.publish()
    airlock(home, "import", str(sim.write_bundle(scratch / "usb-serve")))
    return home


def _measure(wrk: str, url: str, expected: bytes, threads: int, connections: int, seconds: int) -> WrkResult:
    if _fetch(url) != expected:
        raise RuntimeError(f"{url} does not serve the published bytes")
    run_wrk(wrk, url, threads=threads, connections=connections, seconds=WARMUP_SECONDS)
    result = run_wrk(wrk, url, threads=threads, connections=connections, seconds=seconds)
    log(f"  {result.requests_per_second:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
        f"{result.errors} errors")
    return result


def run(scratch: Path, *, seconds: int, connections: int, threads: int = 2) -> ServeFigures:
    tools = ensure_tools({"nginx": "nginx", "wrk": "wrk"})
    home = _published_home(scratch)
    expected = (home / "public" / PATH.lstrip("/")).read_bytes()

    log(f"airlock serve ({WORKERS} workers x {THREADS} threads): wrk {seconds} s")
    with airlock_server(home, workers=WORKERS, threads=THREADS) as base:
        ours = _measure(tools["wrk"], base + PATH, expected, threads, connections, seconds)
        log(f"the same through airlock's Flask view ({VIEW_PATH}, which the poll path leaves to it): wrk {seconds} s")
        view = _measure(tools["wrk"], base + VIEW_PATH, expected, threads, connections, seconds)

    flask = {}
    for worker_class in ("gthread", AIRLOCK_WORKER):
        log(f"plain Flask send_from_directory ({WORKERS} workers x {THREADS} threads, {worker_class}): "
            f"wrk {seconds} s")
        with flask_reference(home / "public", scratch / "flask.log", workers=WORKERS, threads=THREADS,
                             worker_class=worker_class, probe=PATH) as base:
            flask[worker_class] = _measure(tools["wrk"], base + PATH, expected, threads, connections, seconds)

    log(f"nginx on {home / 'public'}: wrk {seconds} s")
    with nginx_server(tools["nginx"], home / "public", scratch / "nginx", workers=WORKERS, probe=PATH) as base:
        theirs = _measure(tools["wrk"], base + PATH, expected, threads, connections, seconds)

    return ServeFigures(f"-t{threads} -c{connections} -d{seconds}s --latency", WORKERS, THREADS, len(expected),
                        ours, theirs, flask["gthread"], flask[AIRLOCK_WORKER], view)
