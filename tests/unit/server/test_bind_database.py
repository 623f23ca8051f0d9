"""Opening the appliance again in the same process (the CLI run in-process
next to a running app) must not disturb a transaction another thread holds.

CI once failed on exactly this: the device-maintenance thread was inside a
``BEGIN IMMEDIATE`` when the CLI re-bound the database proxy to a fresh
object; the thread's commit then popped the new object's (empty) transaction
stack, its own transaction never ended, and every later writer found the
database locked."""

from __future__ import annotations

import sqlite3
import threading

import peewee
import pytest

from server import bind_database
from server.devices.writes import writing
from server.models import database
from server.settings import load_settings


def test_rebinding_the_same_home_keeps_the_database_object(home):
    settings = load_settings(home, environ={})
    first = bind_database(settings)
    assert bind_database(settings) is first
    first.close()


@pytest.mark.sqlite_only  # another connection to the file sees the write lock gone
def test_a_transaction_in_another_thread_survives_a_rebind(home):
    settings = load_settings(home, environ={})
    bind_database(settings)
    inside, rebound = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def background():
        try:
            with writing(database):
                database.execute_sql("INSERT INTO rebind_probe VALUES (1)")
                inside.set()
                assert rebound.wait(10)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            database.close()

    con = sqlite3.connect(home / "airlock.db")
    con.execute("CREATE TABLE rebind_probe (n INTEGER)")
    con.commit()
    con.close()
    t = threading.Thread(target=background)
    t.start()
    assert inside.wait(10)
    bind_database(settings)  # what an in-process `airlock ...` does
    rebound.set()
    t.join(10)
    assert not t.is_alive()
    assert errors == []
    # the thread's transaction ended: another connection can write at once
    con = sqlite3.connect(home / "airlock.db", timeout=0.5)
    con.execute("INSERT INTO rebind_probe VALUES (2)")
    con.commit()
    assert con.execute("SELECT COUNT(*) FROM rebind_probe").fetchone()[0] == 2
    con.close()


@pytest.mark.sqlite_only
def test_an_sqlite_too_old_for_the_checkin_statements_is_one_clear_line(home, monkeypatch):
    from server import db as dbmod
    from tests.conftest import run_airlock

    monkeypatch.setattr(dbmod.sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(dbmod.sqlite3, "sqlite_version", "3.31.1")
    monkeypatch.setattr(database, "obj", None)  # as in a new process
    r = run_airlock(home, "devices", "list")
    assert r.code != 0 and "needs SQLite 3.35 or newer" in r.err and "3.31.1" in r.err, r.err
    assert r.err.count("\n") == 1


def test_read_only_binds_reuse_a_writable_database_and_a_write_gets_one(tmp_path):
    """A read-only command after a write one keeps the writable object (and
    any thread inside it); a write after a read-only one gets a writable one."""
    from tests.conftest import run_airlock

    fresh = tmp_path / "fresh"
    assert run_airlock(fresh, "init").code == 0
    settings = load_settings(fresh, environ={})
    database.obj.close()
    database.initialize(None)
    read_only = bind_database(settings, read_only=True)
    assert read_only.execute_sql("SELECT count(*) FROM schema_migration").fetchone()[0] > 0
    with pytest.raises(peewee.OperationalError, match="readonly"):
        read_only.execute_sql("CREATE TABLE nope (x)")
    writable = bind_database(settings)
    assert writable is not read_only
    writable.execute_sql("CREATE TABLE yes (x)")
    assert bind_database(settings, read_only=True) is writable
    writable.close()
