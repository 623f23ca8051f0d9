"""PostgreSQL's side of the schema: every SQLite migration has its
PostgreSQL form, both engines end with the same tables and columns, two
boxes migrating at once apply each migration once, and the services' SQL
(``?`` placeholders) reaches psycopg2 intact."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg2
import pytest

from server import db as dbmod
from server.db import SchemaError, _pyformat, available_migrations, migrate, open_database, open_postgresql


def test_every_sqlite_migration_has_a_postgresql_form():
    covered = [n for first, last, _, _ in dbmod.postgresql_migrations() for n in range(first, last + 1)]
    assert covered == [n for n, _, _ in available_migrations()]


def test_a_sqlite_migration_without_its_postgresql_form_is_refused(monkeypatch):
    shipped = available_migrations()
    monkeypatch.setattr(dbmod, "available_migrations",
                        lambda: [*shipped, (len(shipped) + 1, "new_thing", "CREATE TABLE new_thing (id INTEGER);")])
    with pytest.raises(SchemaError) as refused:
        dbmod.postgresql_migrations()
    name = f"{len(shipped) + 1:04d}_new_thing.sql"
    assert f"migration {name} has no PostgreSQL form" in str(refused.value)
    assert f"server/migrations/postgresql/{name}" in str(refused.value)


def _sqlite_columns(path) -> dict[str, dict[str, bool]]:
    con = sqlite3.connect(path)
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%'")]
        # a PRIMARY KEY column is NOT NULL on PostgreSQL whatever it says
        return {t: {row[1]: bool(row[3] or row[5]) for row in con.execute(f'PRAGMA table_info("{t}")')}
                for t in tables}
    finally:
        con.close()


def _postgresql_columns(url) -> dict[str, dict[str, bool]]:
    con = psycopg2.connect(url)
    try:
        cur = con.cursor()
        cur.execute("SELECT table_name, column_name, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = 'public'")
        out: dict[str, dict[str, bool]] = {}
        for table, column, nullable in cur.fetchall():
            out.setdefault(table, {})[column] = nullable == "NO"
        return out
    finally:
        con.close()


def test_both_engines_end_with_the_same_tables_columns_and_not_nulls(tmp_path, postgres_cluster):
    path = tmp_path / "airlock.db"
    db = open_database(path)
    migrate(db)
    db.close()
    url = postgres_cluster.new_database(migrated=False)
    pg = open_postgresql(url)
    assert migrate(pg) == [f"{n:04d}_{name}" for n, name, _ in available_migrations()]
    assert migrate(pg) == []  # nothing pending: running `airlock init` again changes nothing
    pg.close_all()
    assert _postgresql_columns(url) == _sqlite_columns(path)


def test_two_boxes_migrating_at_once_apply_each_migration_once(postgres_cluster):
    url = postgres_cluster.new_database(migrated=False)
    results: list = []

    def box():
        pg = open_postgresql(url)
        try:
            results.append(migrate(pg))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            results.append(exc)
        finally:
            pg.close_all()

    threads = [threading.Thread(target=box) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [f"{n:04d}_{name}" for n, name, _ in available_migrations()]
    assert sorted(results, key=len) == [[], [], everything], results
    con = psycopg2.connect(url)
    cur = con.cursor()
    cur.execute("SELECT version FROM schema_migration ORDER BY version")
    assert [v for (v,) in cur.fetchall()] == list(range(1, len(everything) + 1))
    con.close()


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = %s AND c = %s"),
    ("SELECT '?' , x FROM t WHERE y LIKE '%z%' AND w = ?", "SELECT '?' , x FROM t WHERE y LIKE '%%z%%' AND w = %s"),
    ("SELECT 'it''s ?', ? FROM t", "SELECT 'it''s ?', %s FROM t"),
    ("SELECT 5 % 2", "SELECT 5 %% 2"),
    # peewee's own SQL, already for psycopg2, is left alone
    ('SELECT "t"."a" FROM "t" WHERE ("t"."b" = %s)', 'SELECT "t"."a" FROM "t" WHERE ("t"."b" = %s)'),
])
def test_placeholders_are_translated_outside_string_literals_only(sql, expected):
    assert _pyformat(sql) == expected


def test_a_database_url_that_is_not_postgresql_is_one_clear_line(tmp_path):
    from server.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path, environ={"AIRLOCK_DATABASE_URL": "mysql://root:hunter2@db/airlock"})
    assert "database_url" in str(refused.value) and "postgresql://" in str(refused.value)
    assert "hunter2" not in str(refused.value)  # a password in the URL is never echoed


@pytest.mark.parametrize("how", ["atomic", "writing"])
def test_immediate_transactions_of_two_boxes_run_one_after_the_other(postgres_cluster, how):
    """A read-then-write in ``atomic("IMMEDIATE")`` (SQLite's BEGIN
    IMMEDIATE: the users', imports', exports' services) or in ``writing()``
    (the devices' and reports', through the write gate) on two separate
    connections, as two app servers would: the second waits for the first's
    commit, so no update is lost."""
    import time

    from server.devices.writes import writing

    url = postgres_cluster.new_database()
    boxes = [open_postgresql(url), open_postgresql(url)]
    boxes[0].execute_sql("CREATE TABLE probe (n BIGINT NOT NULL)")
    boxes[0].execute_sql("INSERT INTO probe (n) VALUES (0)")
    inside = threading.Barrier(2, timeout=10)

    def add_one(db):
        inside.wait()  # both start together
        with (db.atomic("IMMEDIATE") if how == "atomic" else writing(db)):
            (n,) = db.execute_sql("SELECT n FROM probe").fetchone()
            time.sleep(0.3)  # the other box's transaction would read the same n meanwhile
            db.execute_sql("UPDATE probe SET n = ?", (n + 1,))

    threads = [threading.Thread(target=add_one, args=(db,)) for db in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert boxes[0].execute_sql("SELECT n FROM probe").fetchone() == (2,)
    for db in boxes:
        db.close_all()


def test_backup_and_restore_refuse_a_postgresql_home_in_one_line(tmp_path, postgres_cluster):
    from tests.conftest import new_home, run_airlock

    home = new_home(tmp_path / "home", postgres_cluster.new_database())
    assert run_airlock(home, "init").code == 0
    (tmp_path / "pass").write_text("a long backup passphrase\n")
    (tmp_path / "dest").mkdir()
    for args in (("backup", tmp_path / "dest"), ("restore", tmp_path / "pass")):
        r = run_airlock(home, *args, "--passphrase-file", tmp_path / "pass")
        assert r.code == 1 and "pg_dump" in r.err and r.err.count("\n") == 1, r
    assert list((tmp_path / "dest").iterdir()) == []
    assert not (home / "airlock.db").exists()  # nothing made on the side


def _backend_pids(db) -> list[int]:
    return [row[0] for row in db.execute_sql("SELECT pg_backend_pid()").fetchall()]


def test_a_connection_back_in_the_pool_moments_ago_is_reused_without_a_round_trip(postgres_cluster, monkeypatch):
    """peewee's pool sends ``SELECT 1`` (holding its lock) before handing out
    each pooled connection; a connection that came back less than ``FRESH``
    seconds ago, idle, is handed out without it, and an older one is still
    asked, so a connection the server dropped meanwhile is replaced."""
    url = postgres_cluster.new_database()
    db = open_postgresql(url)
    asked: list[object] = []
    real = db._adapter.is_connection_closed
    monkeypatch.setattr(db._adapter, "is_connection_closed", lambda conn: asked.append(conn) or real(conn))
    try:
        first = _backend_pids(db)
        db.close()  # back to the pool
        assert _backend_pids(db) == first and asked == []  # the same connection, not asked
        db.close()
        monkeypatch.setattr(type(db), "FRESH", 0.0)  # every pooled connection is now "old"
        assert _backend_pids(db) == first and len(asked) == 1  # asked, alive: reused
        db.close()
        other = open_postgresql(url)
        other.execute_sql("SELECT pg_terminate_backend(?)", (first[0],))
        other.close_all()
        time.sleep(0.2)
        replaced = _backend_pids(db)  # asked: the server had dropped it, a new one is made
        assert replaced != first and len(asked) == 2
    finally:
        db.close_all()


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = $1 AND c = $2"),
    ("SELECT '?', x FROM t WHERE y LIKE '%z%' AND w = ?", "SELECT '?', x FROM t WHERE y LIKE '%z%' AND w = $1"),
    ("SELECT 'it''s ?', ?::text[] FROM t", "SELECT 'it''s ?', $1::text[] FROM t"),
])
def test_a_prepared_statement_numbers_its_placeholders_outside_string_literals(sql, expected):
    assert dbmod._numbered(sql) == expected


def _prepared_names(db) -> list[str]:
    return [name for (name,) in db.execute_sql("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall()]


def test_a_statement_is_prepared_once_per_connection_and_then_only_executed(postgres_cluster, monkeypatch):
    """``execute_prepared``: the first use on a connection prepares, later
    ones only ``EXECUTE``; another connection prepares its own; the answer is
    what ``execute_sql`` gives; a rolled-back transaction keeps the statement;
    the driver's errors come as peewee's."""
    from peewee import IntegrityError

    db = open_postgresql(postgres_cluster.new_database())
    sent: list[str] = []
    try:
        db.execute_sql("CREATE TABLE pair (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")
        db.execute_sql("INSERT INTO pair VALUES ('a?', 1), ('b', 2)")
        sql = "SELECT k, v FROM pair WHERE k = ? OR v = ? ORDER BY k"
        expected = db.execute_sql(sql, ("a?", 2)).fetchall()
        real = db.cursor

        def watched():
            cursor = real()
            execute = cursor.execute

            class Watched:
                def execute(self, query, params=None):
                    sent.append(query.split(" ", 1)[0])
                    return execute(query, params)

                def __getattr__(self, name):
                    return getattr(cursor, name)

            return Watched()

        monkeypatch.setattr(db, "cursor", watched)
        assert dbmod.execute_prepared(db, "t_pair", sql, ("a?", 2)).fetchall() == expected
        assert dbmod.execute_prepared(db, "t_pair", sql, ("b", 1)).fetchall() == expected
        assert sent == ["PREPARE", "EXECUTE", "EXECUTE"]
        monkeypatch.undo()
        assert _prepared_names(db) == ["t_pair"]
        with db.atomic():
            dbmod.execute_prepared(db, "t_insert", "INSERT INTO pair VALUES (?, ?)", ("c", 3))
            db.rollback()
        assert db.execute_sql("SELECT count(*) FROM pair").fetchone() == (2,)
        assert dbmod.execute_prepared(db, "t_insert", "INSERT INTO pair VALUES (?, ?)", ("c", 3)).rowcount == 1
        with pytest.raises(IntegrityError):
            dbmod.execute_prepared(db, "t_insert", "INSERT INTO pair VALUES (?, ?)", ("c", 4))
        assert db.execute_sql("SELECT k, v FROM pair ORDER BY k").fetchall() == [("a?", 1), ("b", 2), ("c", 3)]
        # another connection of the same pool: prepared there on its first use
        pid = _backend_pids(db)[0]
        got: list = []
        thread = threading.Thread(target=lambda: got.append(
            (dbmod.execute_prepared(db, "t_pair", sql, ("b", 1)).fetchall(), _backend_pids(db)[0],
             _prepared_names(db), db.close())))
        thread.start()
        thread.join(10)
        assert got[0][0] == expected and got[0][1] != pid and got[0][2] == ["t_pair"]
    finally:
        db.close_all()


def test_execute_prepared_on_sqlite_is_execute_sql(tmp_path):
    db = open_database(tmp_path / "x.db")
    try:
        db.execute_sql("CREATE TABLE pair (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        db.execute_sql("INSERT INTO pair VALUES ('a?', 1), ('b', 2)")
        sql = "SELECT k, v FROM pair WHERE k = ? OR v = ? ORDER BY k"
        assert dbmod.execute_prepared(db, "t_pair", sql, ("a?", 2)).fetchall() == [("a?", 1), ("b", 2)]
    finally:
        db.close()


def test_a_statement_the_server_lost_is_prepared_again(postgres_cluster):
    """After ``DEALLOCATE ALL`` (as ``DISCARD ALL`` or a pooler changing the
    server connection would leave it) the next use prepares the statement
    again and answers; inside a transaction the error is raised (the
    transaction is aborted) and the use after it prepares again; a name
    that is not a plain identifier is refused before any SQL."""
    from peewee import DatabaseError as PeeweeError

    db = open_postgresql(postgres_cluster.new_database())
    try:
        sql = "SELECT ? + 1"
        assert dbmod.execute_prepared(db, "t_inc", sql, (1,)).fetchone() == (2,)
        db.execute_sql("DEALLOCATE ALL")
        assert _prepared_names(db) == []
        assert dbmod.execute_prepared(db, "t_inc", sql, (2,)).fetchone() == (3,)
        assert _prepared_names(db) == ["t_inc"]
        db.execute_sql("DEALLOCATE ALL")
        with pytest.raises(PeeweeError, match="t_inc"), db.atomic():
            dbmod.execute_prepared(db, "t_inc", sql, (3,))
        assert dbmod.execute_prepared(db, "t_inc", sql, (4,)).fetchone() == (5,)
        # prepared on the server but not known as such here: used as it is
        db.execute_sql("DEALLOCATE ALL")
        db.execute_sql("PREPARE t_inc AS SELECT $1::int + 1")
        db.connection().prepared.discard("t_inc")
        assert dbmod.execute_prepared(db, "t_inc", sql, (5,)).fetchone() == (6,)
        for bad in ("t_inc; DROP TABLE x", "T", "1x", ""):
            with pytest.raises(ValueError, match="prepared statement's name"):
                dbmod.execute_prepared(db, bad, sql, (1,))
    finally:
        db.close_all()


def test_sessions_read_committed_whatever_the_servers_default(postgres_cluster):
    """The writers' lock and the audit chain need each statement to read what
    was committed before it began: a database whose default a DBA set to
    REPEATABLE READ still gets READ COMMITTED sessions from the appliance,
    and the session's other settings (synchronous_commit) still apply."""
    url = postgres_cluster.new_database()
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = "
                           "''repeatable read''', current_database()); END $$")
    admin.close()
    plain = psycopg2.connect(url)
    db = open_postgresql(url, synchronous_commit="off")
    try:
        cursor = plain.cursor()
        cursor.execute("SHOW transaction_isolation")
        assert cursor.fetchone() == ("repeatable read",)  # the database's default, as a plain client sees it
        with db.atomic():
            assert db.execute_sql("SHOW transaction_isolation").fetchone() == ("read committed",)
            assert db.execute_sql("SHOW synchronous_commit").fetchone() == ("off",)
    finally:
        plain.close()
        db.close_all()


def test_a_postgresql_too_old_is_refused_in_one_line_before_any_change(postgres_cluster, monkeypatch):
    url = postgres_cluster.new_database(migrated=False)
    monkeypatch.setattr(dbmod, "MIN_POSTGRESQL", 990000)  # this server (15) as if 99 were needed
    db = open_postgresql(url)
    try:
        with pytest.raises(SchemaError) as refused:
            migrate(db)
        assert "Airlock needs PostgreSQL 99 or later" in str(refused.value)
        assert "leave database_url out of airlock.toml" in str(refused.value)
        (tables,) = db.execute_sql("SELECT count(*) FROM information_schema.tables "
                                   "WHERE table_schema = 'public'").fetchone()
        assert tables == 0
    finally:
        db.close_all()
    monkeypatch.undo()
    db = open_postgresql(url)
    try:
        assert migrate(db)  # the same server, at the real minimum: migrated
    finally:
        db.close_all()


def test_only_a_database_error_with_a_deadlock_or_serialization_code_is_retried():
    """``retryable``: a deadlock (40P01) or serialization failure (40001)
    as peewee raises it (the driver's error inside) is run again; another
    code, another exception raised while handling one, or a database error
    raised ``from None`` is not."""
    import peewee

    from server.db import retryable, sqlstate

    class DriverError(Exception):  # what psycopg2's errors carry
        def __init__(self, code):
            super().__init__(f"driver error {code}")
            self.pgcode = code

    def raised(make):
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the exception under test
            return exc
        raise AssertionError("nothing raised")

    def wrapped(code):  # peewee's __exception_wrapper__: the driver's error is args[0], and the context
        def make():
            try:
                raise DriverError(code)
            except DriverError as exc:
                raise peewee.OperationalError(exc) from exc
        return make

    def while_handling(code, then):
        def make():
            try:
                wrapped(code)()
            except peewee.OperationalError:
                then()
        return make

    def not_database():
        raise ValueError("not the database's")

    def from_none():
        raise peewee.OperationalError("reported on its own") from None

    assert retryable(raised(wrapped("40P01"))) and retryable(raised(wrapped("40001")))
    assert sqlstate(raised(wrapped("40P01"))) == "40P01"
    assert not retryable(raised(wrapped("23505")))  # a unique violation is an answer, not a race
    assert not retryable(raised(while_handling("40P01", not_database)))
    assert not retryable(raised(while_handling("40P01", from_none)))
    assert sqlstate(raised(not_database)) is None


def test_a_forked_child_never_uses_the_connection_its_parent_had_open(postgres_cluster):
    """A connection open when the process forks (``airlock serve``'s
    arbiter before its workers) is not the child's: the child sees it
    closed, opens its own, and leaves the parent's session alone (two
    workers on one inherited connection read each other's answers)."""
    import json
    import os

    db = open_postgresql(postgres_cluster.new_database())
    try:
        (parent,) = db.execute_sql("SELECT pg_backend_pid()").fetchone()  # open, and left open
        reading, writing = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                seen = {"closed": db.is_closed()}
                seen["pid"] = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
                db.close()
                os.write(writing, json.dumps(seen).encode())
            finally:
                os._exit(0)
        os.close(writing)
        with os.fdopen(reading) as pipe:
            seen = json.loads(pipe.read() or "{}")
        os.waitpid(child, 0)
        assert seen.get("closed") is True, seen
        assert seen.get("pid") not in (None, parent), seen
        assert db.execute_sql("SELECT pg_backend_pid()").fetchone() == (parent,)  # the parent's still works
    finally:
        db.close_all()


def test_closing_the_models_database_before_a_fork_closes_its_whole_pool(postgres_cluster, tmp_path):
    """``close_models_database`` (``airlock serve``, before gunicorn forks):
    no connection of the models' database stays open on the server."""
    from server import bind_database, close_models_database
    from server.settings import load_settings

    url = postgres_cluster.new_database()
    (tmp_path / "airlock.toml").write_text(f'database_url = "{url}"\n')
    db = bind_database(load_settings(home=tmp_path, environ={}))
    watcher = psycopg2.connect(url)
    watcher.autocommit = True

    def sessions() -> int:
        with watcher.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            return cursor.fetchone()[0]

    try:
        db.execute_sql("SELECT 1")
        assert sessions() == 1 and not db.is_closed()
        close_models_database()
        deadline = time.monotonic() + 10
        while sessions() and time.monotonic() < deadline:  # the server notices the goodbye at once; allow a moment
            time.sleep(0.05)
        assert sessions() == 0 and db.is_closed()
    finally:
        watcher.close()
        db.close_all()
