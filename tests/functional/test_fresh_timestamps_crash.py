"""Crash safety of `airlock timestamp refresh`: killed with SIGKILL at every
rename, link, symlink, fsync and unlink it makes (strace's fault injection,
as tests/functional/test_crash.py does for imports).  After each kill devices
see exactly the old timestamp or exactly the new one, beside the same other
files; reconciliation removes every leftover; and a refresh runs again to
completion."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Timestamp

from signing.keys import load_public_key
from tests.conftest import pin, run_airlock
from tests.functional.test_crash import EVERY, SYSCALLS
from tests.support import homedb
from tests.support.simulator import RepoSim


def served(home: Path) -> dict[str, str]:
    meta = home / "public/repos/acme/metadata"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in meta.iterdir()}


def served_version(home: Path) -> int:
    data = (home / "public/repos/acme/metadata/timestamp.json").read_bytes()
    return Metadata[Timestamp].from_bytes(data).signed.version


def strace_refresh(home: Path, inject: str | None, log: Path | None = None):
    cmd = ["strace", "-f", "-qq", "-o", str(log or os.devnull), "-e", f"trace={','.join(SYSCALLS)}"]
    if inject:
        cmd += ["-e", f"inject={inject}"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", AIRLOCK_MDNS_ENABLED="0")
    cmd += [sys.executable, "-m", "appliance.cli", "--home", str(home), "timestamp", "refresh", "--force"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    base = tmp_path_factory.mktemp("refresh-crash")
    sim = RepoSim("acme")
    home = base / "home"
    assert run_airlock(home, "init").code == 0
    assert pin(lambda *a: run_airlock(home, *a), sim, base).code == 0
    sim.root.signed.add_key(load_public_key(home / "timestamp-key.json"), "timestamp")
    sim.root.signed.version += 1
    sim.sign_and_store("root")
    sim.add_target("fw/a.bin", b"A" * 500)
    sim.publish()
    assert run_airlock(home, "import", sim.write_bundle(base / "usb")).code == 0
    assert run_airlock(home, "timestamp", "refresh", "--force").code == 0  # the appliance's own is served
    done = base / "done"
    homedb.copy_home(home, done)
    log = base / "strace.log"
    proc = strace_refresh(done, None, log)
    assert proc.returncode == 0, proc.stderr
    counts = Counter(line.split("(", 1)[0].split()[-1] for line in log.read_text().splitlines() if "(" in line)
    return {"home": home, "old": served(home), "version": served_version(home), "counts": counts}


def test_a_refresh_killed_anywhere_serves_the_old_timestamp_or_the_new(scenario, tmp_path):
    from appliance.importer import reconcile_if_idle
    from server import bind_database
    from server.settings import load_settings

    points = [f"{name}:signal=SIGKILL:when={n}" for name in SYSCALLS if name in EVERY
              for n in range(1, scenario["counts"].get(name, 0) + 1)]
    assert len(points) > 10, scenario["counts"]
    homes = [tmp_path / f"h{i}" for i in range(len(points))]

    def kill(i: int):
        homedb.copy_home(scenario["home"], homes[i])
        return strace_refresh(homes[i], points[i])

    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = list(pool.map(kill, range(len(points))))
    old, version = scenario["old"], scenario["version"]
    outcomes = Counter()
    for point, proc, home in zip(points, procs, homes, strict=True):
        seen = served(home)
        others = {k: v for k, v in seen.items() if k != "timestamp.json"}
        assert others == {k: v for k, v in old.items() if k != "timestamp.json"}, (point, proc.stderr[-300:])
        state = "old" if seen == old else "new"
        if state == "new":
            assert served_version(home) == version + 1, point
        settings = load_settings(home)
        bind_database(settings)
        assert reconcile_if_idle(settings) is not None
        assert served(home) == seen, point
        assert not list((home / "public/repos/acme").rglob(".tmp-*")), point
        again = run_airlock(home, "timestamp", "refresh", "--force")
        assert again.code == 0, (point, again.err)
        assert served_version(home) == version + (2 if state == "new" else 1), point
        outcomes[(state, proc.returncode != 0)] += 1
        shutil.rmtree(home)
    assert outcomes[("old", True)] > 0 and outcomes[("new", True)] > 0, outcomes
