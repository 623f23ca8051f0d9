"""Crash safety: `airlock import` killed with SIGKILL at every rename, link,
symlink, fsync, mkdir and unlink it makes (and at sampled writes), by
strace's fault injection.  After each kill the served tree is exactly the
old repository or exactly the new one; start-up reconciliation makes the
database agree with it and removes every leftover; the database passes
`PRAGMA integrity_check`; and the import runs again to completion."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import pin, run_airlock
from tests.support import homedb
from tests.support.simulator import RepoSim

SYSCALLS = ["rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "fsync", "fdatasync",
            "mkdir", "mkdirat", "unlink", "unlinkat"]
# every one of these is a kill point: they are the publish step's commit path
EVERY = {"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "fsync", "fdatasync", "unlink"}
SAMPLES = 6  # kill points spread over the others (mostly staging and clean-up)


def tree(home: Path) -> dict:
    """What devices can see: every metadata file served and every target file."""
    repo = home / "public/repos/acme"
    meta = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (repo / "metadata").iterdir()}
    targets = sorted(str(p.relative_to(repo / "targets")) for p in (repo / "targets").rglob("*") if p.is_file())
    return {"metadata": meta, "targets": targets}


def accepted(home: Path) -> list[dict]:
    con = sqlite3.connect(home / "airlock.db")
    rows = con.execute("SELECT details FROM import_record WHERE status = 'accepted' ORDER BY id").fetchall()
    con.close()
    return [json.loads(r[0]) for r in rows]


def integrity(home: Path) -> str:
    con = sqlite3.connect(home / "airlock.db")
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def strace_import(home: Path, media: Path, inject: str | None, log: Path | None = None):
    cmd = ["strace", "-f", "-qq", "-o", str(log or os.devnull), "-e", f"trace={','.join(SYSCALLS + ['write'])}"]
    if inject:
        cmd += ["-e", f"inject={inject}"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd += [sys.executable, "-m", "appliance.cli", "--home", str(home), "import", str(media)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """An appliance serving acme v1, and a bundle that changes everything:
    a new root, new targets (one in a new folder), a target removed."""
    base = tmp_path_factory.mktemp("crash")
    sim = RepoSim("acme")
    home = base / "old-home"
    assert run_airlock(home, "init").code == 0
    assert pin(lambda *a: run_airlock(home, *a), sim, base).code == 0
    sim.add_target("fw/a.bin", b"A" * 5000)
    sim.add_target("fw/gone.bin", b"G" * 100)
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(base / "usb1")).code == 0
    sim.rotate("timestamp")
    sim.remove_target("fw/gone.bin")
    sim.add_target("fw/b.bin", b"B" * 70000)
    sim.add_target("new-folder/deep/c.bin", b"C" * 3000)
    sim.publish()
    media = sim.write_bundle(base / "usb2")

    done = base / "new-home"
    homedb.copy_home(home, done)
    log = base / "strace.log"
    proc = strace_import(done, media, None, log)
    assert proc.returncode == 0, proc.stderr
    counts = Counter(line.split("(", 1)[0].split()[-1] for line in log.read_text().splitlines() if "(" in line)
    return {"base": base, "home": home, "media": media, "old": tree(home), "new": tree(done), "counts": counts}


def kill_points(counts: Counter) -> list[str]:
    points = []
    for name in [*SYSCALLS, "write"]:
        total = counts.get(name, 0)
        if name in EVERY or total <= SAMPLES:
            whens = range(1, total + 1)
        else:
            whens = sorted({max(1, total * k // SAMPLES) for k in range(1, SAMPLES + 1)})
        points += [f"{name}:signal=SIGKILL:when={n}" for n in whens]
    return points


def test_kill_anywhere_then_recover(scenario, tmp_path):
    from appliance.importer import reconcile_if_idle
    from server import bind_database
    from server.settings import load_settings

    points = kill_points(scenario["counts"])
    assert len(points) > 20, scenario["counts"]
    homes = [tmp_path / f"h{i}" for i in range(len(points))]

    def kill(i: int):
        homedb.copy_home(scenario["home"], homes[i])
        return strace_import(homes[i], scenario["media"], points[i])

    with ThreadPoolExecutor(max_workers=3) as pool:  # the killed imports, three at a time
        procs = list(pool.map(kill, range(len(points))))
    outcomes = Counter()
    for point, proc, home in zip(points, procs, homes, strict=True):
        killed = proc.returncode != 0
        seen = tree(home)
        state = ("old" if seen["metadata"] == scenario["old"]["metadata"]
                 else "new" if seen["metadata"] == scenario["new"]["metadata"] else None)
        # before any repair, devices see exactly the old metadata or exactly the new
        assert state is not None, (point, proc.stderr[-500:], seen)
        # every target file the served metadata names is there (new ones may be too, unreferenced)
        assert set(scenario[state]["targets"]) <= set(seen["targets"]), point

        # restart: reconciliation repairs the record and removes leftovers
        settings = load_settings(home)
        bind_database(settings)
        assert reconcile_if_idle(settings) is not None
        after = tree(home)
        assert after == scenario[state], (point, after)
        assert os.listdir(home / "staging") == []
        assert not list((home / "public/repos/acme").rglob(".tmp-*"))
        records = accepted(home)
        if state == "new":
            assert len(records) == 2 and records[-1]["repositories"]["acme"]["versions_after"]["timestamp"] >= 3
        else:
            assert len(records) == 1, point
        assert integrity(home) == "ok"

        # and the import can be run again
        again = run_airlock(home, "import", scenario["media"])
        assert again.code == 0, (point, again.err)
        assert tree(home) == scenario["new"]
        assert len(accepted(home)) == 2
        outcomes[(state, killed)] += 1
        shutil.rmtree(home)
    # the kills fell both before and after the point of no return
    assert outcomes[("old", True)] > 0 and outcomes[("new", True)] > 0, outcomes


def test_two_imports_at_once_never_interleave(airlock, sim, home, tmp_path):
    import fcntl

    pin(airlock, sim, tmp_path)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    fd = os.open(home / "state/import.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"4242")
        r = airlock("import", media)
        assert r.code == 1 and "another import is running (pid 4242)" in r.err
    finally:
        os.close(fd)
    assert airlock("import", media).code == 0


def test_serve_start_records_a_publication_whose_record_was_lost(airlock, sim, home, tmp_path):
    """The state a crash between the metadata swap and the database commit
    leaves (tree new, record missing) is repaired when `airlock serve` starts."""
    from tests.support.server import airlock_server

    pin(airlock, sim, tmp_path)
    sim.add_target("fw/a.bin", b"A")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb"), "--operator", "alice").code == 0
    con = sqlite3.connect(home / "airlock.db")
    with con:
        con.execute("DELETE FROM import_record")
    con.close()
    (home / "staging" / "20260101T000000-cafe").mkdir()
    with airlock_server(home):
        pass
    records = accepted(home)
    assert len(records) == 1 and records[0]["recovered"] is True
    assert records[0]["repositories"]["acme"]["targets_added"] == ["fw/a.bin"]
    con = sqlite3.connect(home / "airlock.db")
    operator, reason = con.execute("SELECT operator, reason FROM import_record").fetchone()
    con.close()
    assert operator == "alice" and "stopped before recording it" in reason
    assert os.listdir(home / "staging") == []
