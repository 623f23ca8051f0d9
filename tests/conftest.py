"""Fixtures shared by every test: an appliance home on a temporary folder,
the `airlock` CLI run in-process, and a vendor repository simulator."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import homedb
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


# The database-facing tests run on both engines: the tests under these
# folders, and any test marked `both_engines`, that use a home (the `engine`
# fixture).  Elsewhere a home is on SQLite.
BOTH_ENGINES = ("tests/unit/server/", "tests/functional/devices/", "tests/functional/reports/",
                "tests/functional/export/", "tests/functional/console/")


def pytest_generate_tests(metafunc):
    _parametrize_module_engine(metafunc)
    if "engine" not in metafunc.fixturenames:
        return
    path = str(Path(metafunc.definition.path).relative_to(Path(__file__).parent.parent))
    if metafunc.definition.get_closest_marker("sqlite_only"):
        return
    if metafunc.definition.get_closest_marker("both_engines") or path.startswith(BOTH_ENGINES):
        metafunc.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


def _parametrize_module_engine(metafunc):
    """The same for module-scoped appliances (``module_engine``)."""
    path = str(Path(metafunc.definition.path).relative_to(Path(__file__).parent.parent))
    if "module_engine" in metafunc.fixturenames and path.startswith(BOTH_ENGINES) \
            and not metafunc.definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("module_engine", ["sqlite", "postgresql"], indirect=True, scope="module")


@pytest.fixture
def engine(request) -> str:
    """``sqlite`` or ``postgresql``: the database engine of this test's home."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_cluster():
    """A private PostgreSQL on loopback for the session (tests/support/postgres.py)."""
    from tests.support.postgres import Cluster

    cluster = Cluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(engine, request):
    """The database_url of this test's home: empty (SQLite), or a new
    PostgreSQL database holding the current schema."""
    if engine != "postgresql":
        yield ""
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database()
    yield url
    from server.models import database

    current = database.obj
    if current is not None and getattr(current, "airlock_path", None) == url:
        current.close_all()  # the models' pool holds connections to it
    cluster.drop_database(url)


@pytest.fixture(scope="module")
def module_engine(request) -> str:
    """``sqlite`` or ``postgresql``: the engine of a module-scoped appliance."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="module")
def module_database_url(module_engine, request):
    """``database_url`` for a module-scoped appliance's home."""
    if module_engine != "postgresql":
        yield ""
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database()
    yield url
    from server.models import database

    current = database.obj
    if current is not None and getattr(current, "airlock_path", None) == url:
        current.close_all()
    cluster.drop_database(url)


def new_home(path: Path, database_url: str = "") -> Path:
    """Write ``path``/airlock.toml naming ``database_url`` (if any); the
    caller runs `airlock init`."""
    path.mkdir(parents=True, exist_ok=True)
    if database_url:
        (path / "airlock.toml").write_text(f'database_url = "{database_url}"\n')
    return path


@pytest.fixture
def home(tmp_path, database_url) -> Path:
    h = new_home(tmp_path / "home", database_url)
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
    con = homedb.connect(home)
    state["db:repository"] = con.execute("SELECT * FROM repository ORDER BY id").fetchall()
    state["db:accepted"] = con.execute(
        "SELECT id, bundle_digest, details FROM import_record WHERE status != 'refused' ORDER BY id").fetchall()
    con.close()
    state["staging"] = sorted(os.listdir(home / "staging"))
    return state


def refusals(home: Path) -> list[tuple[str, str]]:
    con = homedb.connect(home)
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
