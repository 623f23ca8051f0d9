"""Read and poke an appliance home's database from a test, on either engine.

``connect(home)`` gives a DB-API connection to the home's database: its
SQLite file, or the PostgreSQL database its ``database_url`` names, taking
the same ``?`` placeholders either way (as the services write them)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import psycopg2

from server.db import _pyformat
from server.settings import load_settings


class _PgConnection:
    """A psycopg2 connection that takes ``?`` placeholders, like sqlite3's."""

    def __init__(self, url: str):
        self.con = psycopg2.connect(url)

    def execute(self, sql: str, params: Any = ()) -> Any:
        cursor = self.con.cursor()
        cursor.execute(_pyformat(sql), tuple(params))
        return cursor

    def executemany(self, sql: str, seq: Any) -> Any:
        cursor = self.con.cursor()
        cursor.executemany(_pyformat(sql), [tuple(p) for p in seq])
        return cursor

    def commit(self) -> None:
        self.con.commit()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> _PgConnection:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.con.commit()
        else:
            self.con.rollback()


def database_url(home: Path) -> str:
    return load_settings(home, environ={}).database_url


def connect(home: Path) -> Any:
    """sqlite3.connect(HOME/airlock.db), or its PostgreSQL equivalent."""
    url = database_url(home)
    return _PgConnection(url) if url else sqlite3.connect(Path(home) / "airlock.db")


def rows(home: Path, sql: str, params: Any = ()) -> list[tuple]:
    con = connect(home)
    try:
        return [tuple(r) for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()


def is_postgresql(home: Path) -> bool:
    return bool(database_url(home))


def database_bytes(path: Path) -> bytes:
    """The bytes of the SQLite database at ``path`` as of now, its WAL
    included (every page, free ones too), read through SQLite.

    A test must never open a database file itself (``read_bytes()``,
    ``open()``): closing any descriptor of a file drops every POSIX lock
    this process holds on it, its own SQLite connections' included (the
    CLI run in-process keeps one open).  Another process then finds itself
    the last user, checkpoints and deletes the WAL under that connection,
    and the next query here says "database disk image is malformed" (a CI
    run's 15 failures in tests/functional/reports/test_reports_api.py).  A
    raw read would also miss what is still only in the WAL."""
    source = sqlite3.connect(path, timeout=10)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        return copy.serialize()
    finally:
        copy.close()
        source.close()


def close_in_process_database() -> None:
    """Close this thread's connection of the models' database, which the
    in-process `airlock` runs leave open (``bind_database``)."""
    from server.models import database

    if database.obj is not None:
        database.obj.close()


def copy_home(source: Path, dest: Path, symlinks: bool = True) -> None:
    """Copy an appliance home whose database nothing else is writing
    (``symlinks``: links kept as links, as ``shutil.copytree`` has it).
    The in-process connection is closed first: closing the descriptors the
    copy opens on its database would drop that connection's locks (see
    ``database_bytes``), and its last close moves the WAL into the
    database file."""
    close_in_process_database()
    shutil.copytree(source, dest, symlinks=symlinks)


def all_text(home: Path) -> str:
    """Everything the database holds, as text: to check a secret is not in it."""
    url = database_url(home)
    if not url:
        return database_bytes(Path(home) / "airlock.db").decode("latin-1")
    con = _PgConnection(url)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'public'").fetchall()]
        return "\n".join(str(con.execute(f'SELECT string_agg(t::text, chr(10)) FROM "{table}" t').fetchone()[0])
                         for table in tables)
    finally:
        con.close()


def append_setting(home: Path, lines: str) -> None:
    """Add ``lines`` to HOME/airlock.toml, keeping what is there (the
    ``database_url`` a PostgreSQL home's test wrote, say)."""
    toml = Path(home) / "airlock.toml"
    before = toml.read_text() if toml.exists() else ""
    toml.write_text(before + lines)
