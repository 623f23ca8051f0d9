"""A user who may not use the home is told which folder or file, whose it
is, and who lacks access; a user who may only read it can still run the
commands that only read.  The home is made by root, as `airlock init` under
sudo makes it; the commands run as user nobody (tests/support/as_user.py)."""

from __future__ import annotations

import grp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import pin, run_airlock
from tests.support import homedb

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root_home():
    """A home made by root where nobody may reach it (pytest's tmp_path is root's only)."""
    assert os.geteuid() == 0, "the permission tests run as root (they switch to user nobody)"
    base = Path(tempfile.mkdtemp(prefix="airlock-perm-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        assert run_airlock(home, "init").code == 0
        yield home
    finally:
        shutil.rmtree(base)


def as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "tests.support.as_user", "nobody", *map(str, args), "--home", str(home)]
    proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def share_with_nobody(home: Path) -> None:
    """Let nobody read the home by its group, as plant IT staff in the
    service user's group would."""
    os.chown(home, -1, grp.getgrnam("nogroup").gr_gid)
    assert home.stat().st_mode & 0o777 == 0o750


def snapshot(home: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in home.iterdir()}


def test_a_home_nobody_may_enter_is_named_with_its_owner_and_the_user(root_home):
    root_home.chmod(0o750)
    r = as_nobody(root_home, "devices", "list")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"airlock: error: user nobody may not enter {root_home} (folder owned by root:root, mode "
                        "0750): run airlock as root (e.g. `sudo -u root airlock ...`) or give nobody access\n")


def test_read_only_commands_work_for_a_user_who_may_only_read(root_home, sim, tmp_path):
    assert pin(lambda *a: run_airlock(root_home, *a), sim, tmp_path).code == 0
    homedb.close_in_process_database()
    assert not (root_home / "airlock.db-wal").exists()  # as when `airlock serve` is not running
    share_with_nobody(root_home)
    before = snapshot(root_home)
    for args, expect in ((["devices", "list"], "no devices have enrolled yet"),
                         (["repo", "list"], "acme\tpinned root v1"),
                         (["repo", "show", "acme"], "repository acme"),
                         (["releases", "list"], "no releases"),
                         (["audit", "verify"], "records, chain intact")):
        r = as_nobody(root_home, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert expect in r.stdout, (args, r.stdout)
    assert snapshot(root_home) == before  # not a byte written, no -wal or -shm left


def test_read_only_commands_see_what_a_running_writer_committed(root_home, sim, tmp_path):
    # a writer that keeps the database open (as `airlock serve` does) keeps
    # the -wal and -shm files, and commits that are not in the main file yet
    share_with_nobody(root_home)
    writer = sqlite3.connect(root_home / "airlock.db")
    try:
        writer.execute("SELECT 1 FROM schema_migration").fetchall()
        assert pin(lambda *a: run_airlock(root_home, *a), sim, tmp_path).code == 0
        assert (root_home / "airlock.db-wal").stat().st_size > 0
        r = as_nobody(root_home, "repo", "list")
        assert r.returncode == 0, r.stderr
        assert "acme\tpinned root v1" in r.stdout
    finally:
        writer.close()


def test_a_write_refused_names_the_database_file_and_the_user(root_home):
    share_with_nobody(root_home)
    r = as_nobody(root_home, "devices", "tag", "plc-1", "line-a")
    assert r.returncode == 1 and r.stdout == ""
    db = root_home / "airlock.db"
    mode = f"{db.stat().st_mode & 0o777:04o}"
    assert r.stderr == (f"airlock: error: user nobody may not write {db} (file owned by root:root, mode {mode}): "  # noqa: E501
                        "run airlock as root (e.g. `sudo -u root airlock ...`) or give nobody access\n")


def test_write_commands_name_the_folder_they_may_not_create_files_in(root_home, sim, tmp_path):
    """Commands that take a lock file or write the database (approvals,
    triage, imports, maintenance) name what the user may not write, its
    owner and the user: never a bare "Permission denied: ...lock"."""
    # root used the appliance first, as it does: its lock files exist, readable by the group
    assert run_airlock(root_home, "devices", "maintain").code == 0
    assert run_airlock(root_home, "import", sim.write_bundle(tmp_path / "nothing-pinned")).code == 1
    homedb.close_in_process_database()
    share_with_nobody(root_home)
    usb = tmp_path / "usb"
    usb.mkdir()
    usb.chmod(0o777)
    for args in (["releases", "withdraw", "1"], ["reports", "ack", "1"], ["import", usb],
                 ["devices", "maintain"]):
        r = as_nobody(root_home, *args)
        assert r.returncode == 1 and r.stdout == "", (args, r.stdout)
        named = (f"airlock: error: user nobody may not create files in {root_home}",
                 f"airlock: error: user nobody may not write {root_home}/airlock.db")
        assert r.stderr.startswith(named), (args, r.stderr)
        assert "Permission denied" not in r.stderr, (args, r.stderr)
        assert "owned by root:" in r.stderr and "give nobody access" in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr


def test_init_on_a_home_owned_by_another_user_names_its_owner(root_home):
    share_with_nobody(root_home)
    r = as_nobody(root_home, "init")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "user nobody may not" in r.stderr and str(root_home) in r.stderr and "root:" in r.stderr, r.stderr
