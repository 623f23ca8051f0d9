"""`airlock serve`'s workers and the database: no connection crosses the
fork, and a worker that dies (the OOM killer, a missed heartbeat under a
herd) is replaced by one that boots.

The arbiter once kept the models' connection open when it forked (the
start-up reconciliation used it), and every worker inherited it: on
PostgreSQL two workers then shared one socket, and when their first
queries overlapped each read the other's answer and failed to boot, at
which gunicorn stopped the whole server (seen in CI).  Both engines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import new_home, pin, run_airlock
from tests.support.homedb import database_url as home_database_url
from tests.support.server import free_port, wait_until_answers


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
    port = free_port()
    env = dict(os.environ, AIRLOCK_HOME=str(home), AIRLOCK_MDNS_ENABLED="0")
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--bind", f"127.0.0.1:{port}",
                             "--workers", "2", "--threads", "4"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def stopped() -> str:
        return "gunicorn stopped: " + (tmp_path / "serve.log").read_text()[-3000:]

    try:
        wait_until_answers(proc, base + "/healthz", what="airlock serve", timeout=30,
                           log=lambda: (tmp_path / "serve.log").read_text())
        deadline = time.monotonic() + 30
        while len(_workers(proc.pid)) < 2:
            assert time.monotonic() < deadline, "two workers never came up"
            time.sleep(0.1)
        assert set(_answers(base, 6)) == {200}  # the workers have used the database
        if database_url:  # the arbiter holds no PostgreSQL connection, so no worker inherited one
            assert _database_handles(proc.pid, home) == []
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
        assert "Worker failed to boot" not in (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
