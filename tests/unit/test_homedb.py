"""tests/support/homedb.py reads a SQLite database through SQLite, never by
opening the file: closing a descriptor of the file would drop every POSIX
lock this process holds on it, its own open connections' too (see
``homedb.database_bytes``).  Checked in /proc/locks."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tests.support import homedb


def _locks_of_this_process(*paths: Path) -> list[str]:
    inodes = {os.stat(p).st_ino for p in paths}
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "->":  # a request waiting for a lock
            continue
        pid, where = fields[4], fields[5]
        if pid == str(os.getpid()) and int(where.split(":")[2]) in inodes:
            held.append(line)
    return held


def test_reading_the_database_keeps_this_process_locks_and_sees_the_wal(tmp_path):
    db = tmp_path / "airlock.db"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")  # the row stays only in the WAL
        con.execute("CREATE TABLE t (x TEXT)")
        con.execute("INSERT INTO t VALUES ('only-in-the-wal')")
        con.execute("BEGIN")
        assert con.execute("SELECT x FROM t").fetchall() == [("only-in-the-wal",)]
        held = _locks_of_this_process(db, Path(f"{db}-shm"))
        assert held, "an open WAL connection holds locks on the database and its -shm"

        data = homedb.database_bytes(db)
        assert b"only-in-the-wal" in data
        assert _locks_of_this_process(db, Path(f"{db}-shm")) == held

        # what it replaces: one read of the file drops the connection's lock on it
        raw = db.read_bytes()
        assert b"only-in-the-wal" not in raw
        assert len(_locks_of_this_process(db, Path(f"{db}-shm"))) < len(held)
        con.execute("COMMIT")
    finally:
        con.close()
