"""`airlock export` killed with SIGKILL at every fsync, rename and unlink it
makes (strace's fault injection), then run again: the stick ends with every
export exactly once, numbered without a gap, each chained to the one before
and verified by the vendor's verifier; no hidden partial file is left; the
database records exactly the exports on the stick and passes its integrity
check; the audit chain holds.  The kill after the rename and before the
record is the case the pending note (migration 0006) exists for."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_airlock, sign_cli
from tests.support import homedb

SYSCALLS = ["fsync", "fdatasync", "rename", "renameat", "renameat2", "unlink", "unlinkat"]

# strace kills the export at every step and copies the home with its SQLite file
pytestmark = pytest.mark.sqlite_only


def strace_export(home: Path, usb: Path, inject: str | None, log: Path | None = None):
    cmd = ["strace", "-f", "-qq", "-o", str(log or os.devnull), "-e", f"trace={','.join(SYSCALLS)}"]
    if inject:
        cmd += ["-e", f"inject={inject}"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd += [sys.executable, "-m", "appliance.cli", "--home", str(home), "export", str(usb), "--operator", "it"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def manifest_of(path: Path) -> bytes:
    with tarfile.open(path) as tar:
        return tar.extractfile("manifest.json").read()


def check_stick_and_records(home: Path, usb: Path, key: Path, first: int) -> list[int]:
    names = sorted(os.listdir(usb))
    assert all(re.fullmatch(r"airlock-export-[0-9a-z-]+-\d{6}\.tar", n) for n in names), names  # no partials
    sequences = [int(n[-10:-4]) for n in names]
    assert sequences == list(range(first, first + len(names))), sequences
    previous = None
    for name in names:
        args = ["export", "verify", usb / name, "--appliance-key", key]
        code, out, err = sign_cli(*args, *(["--previous", previous] if previous else []))
        assert code == 0, f"{name}: {err}"
        previous = usb / name
    con = sqlite3.connect(home / "airlock.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM export_pending").fetchone()[0] == 0
        rows = con.execute("SELECT sequence, file_name, file_sha256, manifest_sha256 FROM export_record "
                           "WHERE sequence >= ? ORDER BY sequence", (first,)).fetchall()
    finally:
        con.close()
    assert [r[0] for r in rows] == sequences
    for (_seq, name, file_sha, manifest_sha), on_stick in zip(rows, names, strict=True):
        assert name == on_stick
        assert file_sha == hashlib.sha256((usb / name).read_bytes()).hexdigest()
        assert manifest_sha == hashlib.sha256(manifest_of(usb / name)).hexdigest()
    return sequences


def test_export_killed_at_every_step_recovers(site, tmp_path):
    assert shutil.which("strace"), "needs strace: run `sh tests/prereqs.sh` as root (`make test` does)"
    key = site.appliance_pub()
    con = site.db()
    first = con.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM export_record").fetchone()[0]
    con.close()
    # the calls a clean run makes
    dry_home, dry_usb, log = tmp_path / "dry-home", tmp_path / "dry-usb", tmp_path / "dry.log"
    homedb.copy_home(site.home, dry_home, symlinks=False)
    dry_usb.mkdir()
    r = strace_export(dry_home, dry_usb, None, log)
    assert r.returncode == 0, r.stderr
    calls = Counter(m.group(1) for line in log.read_text().splitlines() if (m := re.match(r"\d+\s+(\w+)\(", line)))
    # the export file and its folder are flushed, it is renamed once; SQLite flushes its own
    assert calls["fsync"] >= 2 and calls["renameat2"] + calls["rename"] >= 1 and calls["fdatasync"] >= 2, calls
    points = [(name, n) for name in SYSCALLS for n in range(1, calls[name] + 1)]
    outcomes = Counter()
    with ThreadPoolExecutor(max_workers=3) as pool:  # the killed exports (subprocesses), three at a time
        killed = list(pool.map(lambda point: _kill(site, tmp_path, first, *point), points))
    for point, state in zip(points, killed, strict=True):  # the checks use in-process commands: one at a time
        outcomes[_recover(key, first, *point, *state)] += 1
    # the interesting kill points were all reached
    assert all(outcomes[k] for k in ("done before the kill", "recorded after the kill", "written again",
                                     "as if not run")), outcomes


def _kill(site, tmp_path: Path, first: int, name: str, n: int) -> tuple[Path, Path, int, int]:
    """A copy of the appliance whose export was killed at the ``n``th call of
    ``name``: (home, stick, recorded?, pending?)."""
    home, usb = tmp_path / f"home-{name}-{n}", tmp_path / f"usb-{name}-{n}"
    homedb.copy_home(site.home, home, symlinks=False)
    usb.mkdir()
    killed = strace_export(home, usb, f"{name}:signal=SIGKILL:when={n}")
    assert killed.returncode != 0, f"{name} #{n}: the export was not killed"
    con = sqlite3.connect(home / "airlock.db")
    recorded = con.execute("SELECT COUNT(*) FROM export_record WHERE sequence = ?", (first,)).fetchone()[0]
    pending = con.execute("SELECT COUNT(*) FROM export_pending").fetchone()[0]
    con.close()
    return home, usb, recorded, pending


def _recover(key: Path, first: int, name: str, n: int, home: Path, usb: Path, recorded: int, pending: int) -> str:
    """Export again after the kill, check everything; which outcome it was."""
    again = run_airlock(home, "export", usb, "--operator", "it")
    assert again.code == 0, f"after a kill at {name} #{n}: {again.err}"
    sequences = check_stick_and_records(home, usb, key, first)
    where = f"killed at {name} #{n}, then: {again.out!r}: {sequences}"
    assert run_airlock(home, "audit", "verify").code == 0, where
    shutil.rmtree(home)
    if recorded:  # killed after the export was done: the next one is the next number
        assert sequences == [first, first + 1] and not pending, where
        return "done before the kill"
    if pending and "recorded now" in again.out:  # between the rename and the record
        assert sequences == [first, first + 1], where
        return "recorded after the kill"
    if pending:  # between the pending note and the rename
        assert "written again" in again.out and sequences == [first], where
        return "written again"
    assert sequences == [first] and "power loss" not in again.out, where  # as if it had not run
    return "as if not run"
