"""`airlock serve`'s workers and the database: no connection crosses the
fork, and a worker that dies (the OOM killer, a missed heartbeat under a
herd) is replaced by one that boots.

The arbiter once kept the models' connection open when it forked (the
start-up reconciliation used it), and every worker inherited it: on
PostgreSQL two workers then shared one socket, and when their first
queries overlapped each read the other's answer and failed to boot, at
which gunicorn stopped the whole server (seen in CI).  A SQLite connection
must not cross a fork either (a child holds none of its parent's locks).
Both engines."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import new_home, pin, run_airlock
from tests.support.homedb import database_url as home_database_url
from tests.support.server import airlock_serve_process


def _workers(arbiter: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(arbiter)], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in out}


def _answers(base: str, times: int) -> list[int]:
    statuses = []
    for _ in range(times):  # a new connection each: gunicorn spreads them over the workers
        with urllib.request.urlopen(base + "/api/v1/openapi.json", timeout=10) as r:
            statuses.append(r.status)
    return statuses


def _sockets_to(port: int) -> set[str]:
    """Inodes of this machine's TCP sockets connected to ``port`` on loopback."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _database_handles(pid: int, home: Path) -> list[str]:
    """What process ``pid`` holds open of the home's database: sockets to its
    PostgreSQL server, or the SQLite file and its -wal/-shm."""
    url = home_database_url(home)
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0]) if url else None
    sockets = _sockets_to(port) if port else set()
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if (target.startswith("socket:[") and target[8:-1] in sockets) or \
                (not url and Path(target).name.startswith("airlock.db")):
            held.append(target)
    return held


@pytest.mark.both_engines
def test_no_database_connection_crosses_the_fork_and_a_killed_worker_is_replaced(tmp_path, sim, database_url):
    home = new_home(tmp_path / "home", database_url)
    assert run_airlock(home, "init").code == 0
    assert pin(lambda *a: run_airlock(home, *a), sim, tmp_path).code == 0
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(tmp_path / "usb")).code == 0
    log = home / "serve.log"

    def stopped() -> str:
        return "gunicorn stopped: " + log.read_text()[-3000:]

    with airlock_serve_process(home, workers=2, threads=4) as (proc, base):
        deadline = time.monotonic() + 30
        while len(_workers(proc.pid)) < 2:
            assert time.monotonic() < deadline, "two workers never came up"
            time.sleep(0.1)
        assert set(_answers(base, 6)) == {200}  # the workers have used the database
        assert _database_handles(proc.pid, home) == []  # the arbiter holds none, so no worker inherited one
        for victim in sorted(_workers(proc.pid)):  # one after the other: each replacement must boot
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while victim in _workers(proc.pid) or len(_workers(proc.pid)) < 2:
                assert proc.poll() is None, stopped()
                assert time.monotonic() < deadline, "no replacement worker came up"
                time.sleep(0.1)
            time.sleep(1.0)  # long enough for a replacement that cannot boot to fail
            assert proc.poll() is None, stopped()
            assert set(_answers(base, 6)) == {200}
        assert "Worker failed to boot" not in log.read_text()
