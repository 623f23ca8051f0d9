"""Fixtures shared by every test: an appliance home on a temporary folder,
the `airlock` CLI run in-process, and a vendor repository simulator."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.simulator import RepoSim

# mDNS only ever runs inside a test's private network namespace
# (tests/support/netns.py): an `airlock serve` started by any other test must
# not multicast on this machine's interfaces.
os.environ["AIRLOCK_MDNS_ENABLED"] = "0"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_airlock(home: Path, *args: str) -> Result:
    """Run `airlock --home HOME ARGS...` in this process."""
    from appliance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", str(home), *map(str, args)])
    return Result(code, out.getvalue(), err.getvalue())


def sign_cli(*args) -> tuple[int, str, str]:
    """Run `airlock-sign ARGS...` in this process: (exit code, stdout, stderr)."""
    from signing.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    r = run_airlock(h, "init")
    assert r.code == 0, r.err
    return h


@pytest.fixture
def airlock(home):
    def run(*args: str) -> Result:
        return run_airlock(home, *args)
    return run


@pytest.fixture
def sim() -> RepoSim:
    return RepoSim("acme")


def pin(airlock, sim: RepoSim, tmp_path: Path, root: bytes | None = None) -> Result:
    root = root if root is not None else sim.first_root()
    path = tmp_path / f"pinned-{sim.name}-root.json"
    path.write_bytes(root)
    return airlock("repo", "add", sim.name, "--root", path, "--fingerprint", hashlib.sha256(root).hexdigest())


def tree_state(home: Path) -> dict:
    """Everything a refused import must leave as it was: every file and link
    under public/, and every row of the tables that hold trust state."""
    state = {}
    public = home / "public"
    for dirpath, dirnames, filenames in os.walk(public):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(public))
            if p.is_symlink():
                state[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    con = sqlite3.connect(home / "airlock.db")
    state["db:repository"] = con.execute("SELECT * FROM repository ORDER BY id").fetchall()
    state["db:accepted"] = con.execute(
        "SELECT id, bundle_digest, details FROM import_record WHERE status != 'refused' ORDER BY id").fetchall()
    con.close()
    state["staging"] = sorted(os.listdir(home / "staging"))
    return state


def refusals(home: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(home / "airlock.db")
    rows = con.execute("SELECT status, reason FROM import_record WHERE status = 'refused' ORDER BY id").fetchall()
    con.close()
    return rows


# What a person must never see raw in a refusal line: control characters
# (terminal escapes, newlines) and the bidi override.
CONTROL = {chr(c) for c in range(32)} | {"\x7f", "\u202e"}


def refused(airlock, home: Path, media, *fragments: str) -> str:
    """Import ``media``, expect a refusal, and check what every refusal must
    guarantee: one escaped line naming ``fragments``, recorded, and nothing
    else changed (tree, trusted state, database, staging)."""
    before = tree_state(home)
    r = airlock("import", media)
    assert r.code == 1, r.out
    line = r.err.strip()
    assert line.startswith("airlock: error: ") and "\n" not in line, line
    assert not CONTROL & set(line), f"hostile characters reached the terminal: {line!r}"
    for fragment in fragments:
        assert fragment in line, line
    assert tree_state(home) == before
    assert os.listdir(home / "staging") == []
    assert refusals(home)[-1][1] in line
    return line
