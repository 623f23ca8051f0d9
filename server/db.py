"""The SQLite database: connection settings and numbered migrations.

The schema is only ever created or changed by the numbered SQL files in
``server/migrations/`` (``NNNN_name.sql``), applied in order by
:func:`migrate`, which ``airlock init`` runs.  The app never creates tables
at start-up; it refuses to run on a schema that is behind.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import urllib.parse
from importlib import resources
from pathlib import Path

from peewee import DatabaseError, SqliteDatabase

from server.clock import now_iso
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

# What the database raises when it cannot be used (locked, read-only, corrupt):
# callers outside server/ catch this name, never peewee's.
__all__ = ["DatabaseError", "SchemaError", "check_not_newer", "check_schema", "migrate", "open_database"]

# FULL: an acknowledged import or audit record survives a power cut.
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",
    "busy_timeout": 10_000,  # ms
    "foreign_keys": 1,
}
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(AirlockError):
    """The database schema is missing or older than this version of Airlock."""


MIN_SQLITE = (3, 35)  # UPDATE ... FROM and RETURNING (the check-in group commit)


class AppDatabase(SqliteDatabase):
    """A peewee SQLite database that remembers what :func:`server.bind_database`
    bound it for, so that binding the same file again can keep it."""

    airlock_path: Path | None = None
    airlock_read_only: bool = False


def open_database(path: Path, read_only: bool = False) -> AppDatabase:
    """A peewee database for ``path``; connects lazily, on first use.

    ``read_only``: for commands that only read, so that a user who may read
    the home but not write it can run them (no journal_mode pragma, which
    writes)."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise SchemaError(f"Airlock needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python's is "
                          f"{sqlite3.sqlite_version}: use a Python built against a newer SQLite (Debian 12 has 3.40)")
    if read_only:
        pragmas = {k: v for k, v in PRAGMAS.items() if k != "journal_mode"}
        return AppDatabase(_read_only_uri(path), pragmas=pragmas, autoconnect=True, uri=True)
    return AppDatabase(str(path), pragmas=PRAGMAS, autoconnect=True)


def _read_only_uri(path: Path) -> str:
    """``mode=ro``; or, when SQLite cannot read a WAL database that way (no
    ``-shm`` file, which a reader may not create) and no write is pending
    in a ``-wal`` file, ``immutable=1``: with no -wal, the database file
    holds every committed write."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True)
        try:
            con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return uri
        finally:
            con.close()
    except sqlite3.OperationalError:
        if Path(f"{path}-wal").exists():
            return uri  # let the real connection report it
        return uri + "&immutable=1"


def available_migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped, in order."""
    out = []
    for entry in resources.files("server.migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    out.sort()
    numbers = [n for n, _, _ in out]
    # Numbers are assigned to parallel branches ahead of time, so one may
    # land before a lower one; each is applied once, in order, when present.
    if len(set(numbers)) != len(numbers) or (numbers and numbers[0] != 1):
        raise SchemaError(f"migrations are not numbered uniquely from 1: {numbers}")
    return out


def applied_migrations(db: SqliteDatabase) -> list[int]:
    if not db.table_exists("schema_migration"):
        return []
    return [row[0] for row in db.execute_sql("SELECT version FROM schema_migration ORDER BY version")]


# First line of a migration that drops and recreates tables: it runs with
# foreign keys off (dropping a parent table would cascade into its children)
# and their integrity is checked before it commits.
REBUILDS_TABLES = "-- airlock: rebuilds tables"


def migrate(db: SqliteDatabase) -> list[str]:
    """Apply every pending migration, each in its own transaction."""
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migration ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = set(applied_migrations(db))
    applied = []
    for number, name, sql in available_migrations():
        if number in done:
            continue
        rebuilds = sql.startswith(REBUILDS_TABLES)
        if rebuilds:  # SQLite's own recipe for rebuilding a table; the pragma is a no-op inside a transaction
            db.execute_sql("PRAGMA foreign_keys = OFF")
        try:
            with db.atomic("IMMEDIATE"):
                for statement in _statements(sql):
                    db.execute_sql(statement)
                if rebuilds:
                    broken = db.execute_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaError(f"migration {number:04d}_{name} would leave {len(broken)} rows pointing at "
                                          f"nothing (first: {broken[0]}); nothing was changed")
                db.execute_sql(
                    "INSERT INTO schema_migration (version, name, applied_at) VALUES (?, ?, ?)",
                    (number, name, now_iso()),
                )
        finally:
            if rebuilds:
                db.execute_sql("PRAGMA foreign_keys = ON")
        logger.info("applied migration %04d_%s", number, name)
        applied.append(f"{number:04d}_{name}")
    return applied


def check_schema(db: SqliteDatabase) -> None:
    """Raise unless every shipped migration has been applied."""
    latest = available_migrations()[-1][0]
    have = applied_migrations(db)
    if not have:
        raise SchemaError("the database has no schema: run `airlock init` first")
    missing = {n for n, _, _ in available_migrations()} - set(have)
    if missing:
        raise SchemaError(f"the database schema lacks migration {min(missing)} (this Airlock has 1..{latest}): "
                          "run `airlock init` to upgrade it in place")
    if max(have) > latest:
        raise SchemaError(f"the database schema ({max(have)}) is newer than this Airlock ({latest}): "
                          "install the newer Airlock again")


def check_not_newer(db: SqliteDatabase, where: str) -> None:
    """Raise when a newer Airlock has migrated the database (an upgrade
    undone by hand, a restore onto an older install): this code does not
    know its tables, so it must not write them, nor "upgrade" them."""
    latest = available_migrations()[-1][0]
    have = max(applied_migrations(db), default=0)
    if have > latest:
        raise SchemaError(f"the database in {where} has schema {have}, newer than this Airlock's ({latest}): "
                          "nothing was changed; install the newer Airlock again (or restore the backup taken "
                          "before the upgrade)")


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside strings)."""
    body = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    return [s.strip() for s in body.split(";") if s.strip()]
