"""The database: SQLite (the default) or PostgreSQL, connection settings
and numbered migrations.

The schema is only ever created or changed by the numbered SQL files in
``server/migrations/`` (``NNNN_name.sql``), applied in order by
:func:`migrate`, which ``airlock init`` runs.  The app never creates tables
at start-up; it refuses to run on a schema that is behind.

PostgreSQL (``database_url = "postgresql://..."``) has its own form of every
migration in ``server/migrations/postgresql/`` (see the README there).  The
services write one SQL for both engines: ``?`` placeholders (translated for
psycopg2 here), ``RETURNING``, ``UPDATE ... FROM``, ``ON CONFLICT``; what
differs is asked of :mod:`server.dialect`.  SQLite's ``BEGIN IMMEDIATE``
(one writer at a time) becomes, on PostgreSQL, a transaction that first
takes one advisory lock shared by every app server, so that every
read-then-write the services do stays as serial as it is on one SQLite file;
check-ins alone skip it (``server.devices.group_commit``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from peewee import DatabaseError, SqliteDatabase
from peewee import __exception_wrapper__ as _driver_errors  # type: ignore[attr-defined]
from playhouse.pool import PooledPostgresqlDatabase  # type: ignore[import-untyped]

from server.clock import now_iso
from server.settings import Settings
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

# What the database raises when it cannot be used (locked, read-only, corrupt):
# callers outside server/ catch this name, never peewee's.
__all__ = ["DatabaseError", "SchemaError", "check_not_newer", "check_schema", "migrate", "open_database",
           "open_postgresql", "engine_of"]

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


# pg_advisory_lock keys (64-bit): the writers' lock (SQLite's one writer),
# the migrations', and the import's and export's (held across app servers, server/locks.py).
WRITE_LOCK = 0x4169726C6F636B01
MIGRATE_LOCK = 0x4169726C6F636B02
IMPORT_LOCK = 0x4169726C6F636B03
EXPORT_LOCK = 0x4169726C6F636B04


class AppDatabase(SqliteDatabase):
    """A peewee SQLite database that remembers what :func:`server.bind_database`
    bound it for, so that binding the same file again can keep it."""

    engine = "sqlite"
    airlock_path: Path | str | None = None
    airlock_read_only: bool = False


class AppPostgresDatabase(PooledPostgresqlDatabase):
    """A peewee PostgreSQL database that takes the services' SQL as written
    for SQLite: ``?`` placeholders, and ``atomic("IMMEDIATE")`` for a
    transaction that holds the writers' lock (:data:`WRITE_LOCK`) from its
    first statement to its commit, in every app server.

    Connections are pooled per process (``close()`` hands one back: the app
    closes its connection after every request, and a PostgreSQL connection
    costs a process on the server); a forked child starts an empty pool."""

    engine = "postgresql"
    airlock_path: Path | str | None = None
    airlock_read_only: bool = False
    _pool_pid: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._returned: dict[int, float] = {}  # connection key -> monotonic time it came back to the pool
        super().__init__(*args, **kwargs)

    def connect(self, reuse_if_open: bool = False) -> bool:
        if self._pool_pid != os.getpid():  # the parent's connections are not this process's to use
            self._forget_parents()
        return super().connect(reuse_if_open)

    def is_closed(self) -> bool:
        # A connection the parent had open when it forked is not this
        # process's: closed, so that peewee connects (above) instead of
        # sending this process's queries down the parent's socket, where
        # two forked workers read each other's answers.
        if self._pool_pid is not None and self._pool_pid != os.getpid():
            return True
        return super().is_closed()

    def _forget_parents(self) -> None:
        """A forked child: drop the parent's connections without closing
        them (closing would end the parent's sessions on the server; they
        are kept referenced, never used), and start an empty pool."""
        inherited = [self._state.conn, *(conn for _, _, conn in self._connections),
                     *(pooled.connection for pooled in self._in_use.values())]
        self._inherited = [conn for conn in inherited if conn is not None]
        self.dispose()
        self._pool_pid = os.getpid()
        self._returned = {}

    # peewee's pool asks the server (``SELECT 1``, a round trip, holding the
    # pool's lock) whether each connection it hands out is still alive: one
    # more statement for every request, each waiting thread queued behind
    # it.  A connection that came back less than ``FRESH`` seconds ago, idle
    # and not broken, is handed out without asking; older ones are asked.
    # The price: right after the database server restarts, a request on a
    # connection returned in its last two seconds fails once (and the broken
    # connection is then dropped).
    FRESH = 2.0  # seconds

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        key = self.conn_key(conn)
        self._returned[key] = time.monotonic()
        super()._close(conn, close_conn)
        if close_conn or conn.closed:  # closed for good (stale, broken, or asked): nothing to remember
            self._returned.pop(key, None)

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned.pop(self.conn_key(conn), None)
        if conn.closed or self._adapter.txn_status(conn) != self._adapter.txn_idle:
            return super()._is_closed(conn)
        if returned is not None and time.monotonic() - returned < self.FRESH:
            return False
        return super()._is_closed(conn)

    def execute_sql(self, sql: str, params: Any = None):
        return super().execute_sql(_pyformat(sql), params)

    def begin(self, lock_type: str | None = None) -> None:
        super().begin()
        if lock_type in ("IMMEDIATE", "EXCLUSIVE"):
            self.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def execute_prepared(self, name: str, sql: str, params: Any = ()):
        """``sql`` (``?`` placeholders) as the server-side prepared statement
        ``name``: prepared on the thread's connection the first time that
        connection runs it, then only ``EXECUTE``d, so that PostgreSQL neither
        parses nor plans it again (a third to a half of what a check-in's
        short reads cost it, measured as in docs/benchmarks.md).  A prepared
        statement lives as long as its connection and survives a rolled-back
        transaction.  If the server has lost it (``DISCARD ALL``, a pooler
        that changed the server connection), it is prepared again and run
        once more, unless a transaction was open: that one is aborted, and
        the error is raised."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"a prepared statement's name must match {_NAME.pattern}: {name!r}")
        self._log_query(sql, params)
        with _driver_errors:  # the driver's errors as peewee's, as execute_sql raises them
            cursor = self.cursor()
            prepared = cursor.connection.prepared
            for attempt in (1, 2):
                if name not in prepared:
                    try:
                        cursor.execute(f"PREPARE {name} AS {_numbered(sql)}")
                    except _driver().errors.DuplicatePreparedStatement:  # prepared, but not by us: the same name,
                        if not self.in_transaction():                     # the same SQL (names are per statement)
                            prepared.add(name)
                            continue
                        raise
                    prepared.add(name)
                try:
                    cursor.execute(_executes(name, len(params)), params)
                    return cursor
                except _driver().errors.InvalidSqlStatementName:
                    prepared.discard(name)
                    if attempt == 2 or self.in_transaction():
                        raise
        raise AssertionError("unreachable")  # pragma: no cover


_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _driver() -> Any:
    import psycopg2.errors  # type: ignore[import-untyped]

    return psycopg2


def execute_prepared(db: Any, name: str, sql: str, params: Any = ()):
    """``db.execute_sql(sql, params)``; on PostgreSQL as the prepared
    statement ``name`` (:meth:`AppPostgresDatabase.execute_prepared`), for
    the few statements every check-in runs.  Names are the callers' and
    must differ for different ``sql``."""
    if engine_of(db) == "postgresql":
        return db.execute_prepared(name, sql, params)
    return db.execute_sql(sql, params)


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    """``?`` placeholders outside string literals as PostgreSQL's ``$1``, ``$2``..."""
    numbers = itertools.count(1)
    return _outside_literals(sql, lambda part: re.sub(r"\?", lambda _match: f"${next(numbers)}", part))


@functools.lru_cache(maxsize=64)
def _executes(name: str, count: int) -> str:
    return f"EXECUTE {name} ({', '.join(['%s'] * count)})" if count else f"EXECUTE {name}"


@contextlib.contextmanager
def connected(db: Any) -> Iterator[None]:
    """``with connected(db):`` the thread's open connection, or one opened
    for this block and closed after it.  Unlike peewee's
    ``connection_context``, which closes the connection at its end even
    when it found one open, a service called inside a request then shares
    the request's connection (closed when the request ends) instead of
    opening a second one: on SQLite each opening runs the connection's
    pragmas, which cost more than a point read."""
    if not db.is_closed():
        yield
        return
    with db.connection_context():
        yield


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL error code (SQLSTATE) of the database error ``exc``
    (peewee's, wrapping the driver's), if any; None for any other exception,
    even one raised while a database error was being handled."""
    from peewee import DatabaseError

    seen: BaseException | None = exc
    for _ in range(4):  # peewee wraps the driver's exception
        if seen is None or not (isinstance(seen, DatabaseError) or hasattr(seen, "pgcode")):
            return None
        code = getattr(seen, "pgcode", None)
        if code:
            return str(code)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__) or \
            (seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None)
    return None


def retryable(exc: BaseException) -> bool:
    """A PostgreSQL deadlock (40P01) or serialization failure (40001): the
    transaction was rolled back whole and may simply be run again."""
    return sqlstate(exc) in ("40P01", "40001")


def engine_of(db: Any) -> str:
    """``sqlite`` or ``postgresql``, for a database or the models' proxy."""
    target = getattr(db, "obj", None) or db
    return getattr(target, "engine", "sqlite")


@functools.lru_cache(maxsize=4096)
def _pyformat(sql: str) -> str:
    """SQL written with ``?`` placeholders, for psycopg2: ``?`` outside
    string literals becomes ``%s`` and every ``%`` is doubled.  SQL that
    already uses ``%s`` outside literals (peewee's own) is left alone."""
    if any("%s" in part for part in sql.split("'")[::2]):
        return sql
    return _outside_literals(sql, lambda part: part.replace("%", "%%").replace("?", "%s"),
                             lambda literal: literal.replace("%", "%%"))


def _outside_literals(sql: str, outside: Callable[[str], str], inside: Callable[[str], str] = str) -> str:
    """``sql`` with ``outside`` applied to what lies outside its string
    literals and ``inside`` to their contents, in order (a doubled ``''``
    inside a literal leaves an empty part between its halves, so both
    halves still count as inside)."""
    return "'".join(outside(part) if i % 2 == 0 else inside(part) for i, part in enumerate(sql.split("'")))


@functools.cache
def _preparing_connection() -> type:
    """psycopg2's connection, remembering the statements prepared on it
    (imported here: a SQLite home never loads psycopg2)."""
    import psycopg2.extensions  # type: ignore[import-untyped]

    class PreparingConnection(psycopg2.extensions.connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.prepared: set[str] = set()

    return PreparingConnection


MIN_POSTGRESQL = 120000  # server_version_num: 12.0 (plan_cache_mode; sha256() is from 11)
POOL_SIZE = 32  # PostgreSQL connections per process at most; more requests wait up to 30 s for one


def open_postgresql(url: str, read_only: bool = False, **options: Any) -> AppPostgresDatabase:
    """A peewee database for the PostgreSQL ``url`` (connects lazily).
    ``read_only``: every transaction is read-only.  ``options``: more
    ``-c name=value`` settings for the session (e.g. synchronous_commit)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise SchemaError("database_url must start with postgresql://")
    # READ COMMITTED whatever the server's default: the writers' lock and the
    # audit chain rely on each statement reading what was committed before it
    # began (server.audit), which a REPEATABLE READ transaction would not.
    settings = {"application_name": "airlock", "default_transaction_isolation": r"read\ committed", **options}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    flags = " ".join(f"-c {k}={v}" for k, v in settings.items())
    return AppPostgresDatabase(url, autoconnect=True, options=flags, connect_timeout=10,
                               connection_factory=_preparing_connection(),
                               max_connections=POOL_SIZE, stale_timeout=300, timeout=30)


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


def open_settings_database(settings: Settings, read_only: bool = False, **postgresql_options: str):
    """A new database object for ``settings`` (its SQLite file, or its
    ``database_url``); ``postgresql_options``: session settings on PostgreSQL."""
    db: AppDatabase | AppPostgresDatabase
    if settings.database_url:
        db = open_postgresql(settings.database_url, read_only=read_only, **postgresql_options)
    else:
        db = open_database(settings.database_path, read_only=read_only)
    db.airlock_path = settings.database_url or settings.database_path
    db.airlock_read_only = read_only
    return db


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


# First line of a PostgreSQL migration that stands for several SQLite ones
# (the baseline): "-- airlock: covers 0001-0010".
_COVERS = re.compile(r"^-- airlock: covers (\d{4})-(\d{4})\s*$")


def postgresql_migrations() -> list[tuple[int, int, str, str]]:
    """(first, last, name, sql) for every PostgreSQL migration shipped, in
    order: each stands for the SQLite migrations first..last (a single one
    but for the baseline).  Raises unless together they stand for every
    SQLite migration, once each."""
    out = []
    for entry in resources.files("server.migrations").joinpath("postgresql").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            sql = entry.read_text()
            covers = _COVERS.match(sql.split("\n", 1)[0])
            first = int(covers.group(1)) if covers else int(m.group(1))
            last = int(covers.group(2)) if covers else int(m.group(1))
            if last != int(m.group(1)) or first > last:
                raise SchemaError(f"postgresql/{entry.name}: a migration that covers several ends with its own number")
            out.append((first, last, m.group(2), sql))
    out.sort()
    covered = [n for first, last, _, _ in out for n in range(first, last + 1)]
    expected = [n for n, _, _ in available_migrations()]
    if covered != expected:
        missing = sorted(set(expected) - set(covered))
        name = {n: f"{n:04d}_{nm}.sql" for n, nm, _ in available_migrations()}
        if missing:
            raise SchemaError(f"migration {name[missing[0]]} has no PostgreSQL form: add "
                              f"server/migrations/postgresql/{name[missing[0]]} (server/migrations/README.md)")
        raise SchemaError(f"the PostgreSQL migrations cover {covered}, not {expected}")
    return out


def applied_migrations(db: Any) -> list[int]:
    if not db.table_exists("schema_migration"):
        return []
    return [row[0] for row in db.execute_sql("SELECT version FROM schema_migration ORDER BY version")]


# First line of a migration that drops and recreates tables: it runs with
# foreign keys off (dropping a parent table would cascade into its children)
# and their integrity is checked before it commits.
REBUILDS_TABLES = "-- airlock: rebuilds tables"


def migrate(db: Any) -> list[str]:
    """Apply every pending migration, each in its own transaction."""
    if engine_of(db) == "postgresql":
        return _migrate_postgresql(db)
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


def _migrate_postgresql(db: Any) -> list[str]:
    """The PostgreSQL migrations, each in its own transaction (PostgreSQL's
    DDL is transactional) holding :data:`MIGRATE_LOCK`, so that two boxes
    running `airlock init` at once apply each migration once."""
    names = {n: name for n, name, _ in available_migrations()}
    pending = postgresql_migrations()
    (version,) = db.execute_sql("SHOW server_version_num").fetchone()
    if int(version) < MIN_POSTGRESQL:
        raise SchemaError(f"PostgreSQL {int(version) // 10000} is too old: Airlock needs PostgreSQL "
                          f"{MIN_POSTGRESQL // 10000} or later (sha256(), plan_cache_mode); upgrade the database "
                          "server, or leave database_url out of airlock.toml to use a SQLite file")
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
        db.execute_sql("CREATE TABLE IF NOT EXISTS schema_migration ("
                       " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    applied: list[str] = []
    for first, last, name, sql in pending:
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
            done = set(applied_migrations(db))
            if all(n in done for n in range(first, last + 1)):
                continue
            if any(n in done for n in range(first, last + 1)):
                raise SchemaError(f"postgresql/{last:04d}_{name}.sql covers migrations {first}-{last}, and only "
                                  "some of them are recorded as applied: restore the database from its backup")
            for statement in _statements(sql):
                db.execute_sql(statement)
            for n in range(first, last + 1):
                db.execute_sql("INSERT INTO schema_migration (version, name, applied_at) VALUES (?, ?, ?)",
                               (n, names[n], now_iso()))
        logger.info("applied PostgreSQL migration %04d_%s", last, name)
        applied.extend(f"{n:04d}_{names[n]}" for n in range(first, last + 1))
    return applied


def check_schema(db: Any) -> None:
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
