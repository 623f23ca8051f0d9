"""The audit chain's next link (server.audit): on PostgreSQL the writers'
lock, the head and the insert go in one round trip, the hash computed by the
database; on SQLite in Python.  Both must give the hash
signing.export.audit_hash gives, chain to the head the previous writer
committed, and append nothing when ``record_if``'s condition fails."""

from __future__ import annotations

import threading
import time

import psycopg2

from server import audit
from server.db import WRITE_LOCK
from server.devices import services
from server.models import database
from signing.export import AUDIT_GENESIS, audit_hash
from tests.unit.server.devices.conftest import at_once


def test_each_record_chains_to_the_last_with_the_hash_verify_computes(settings, db):
    first = audit.record("it", "test.first", "subject-1", {"n": 1})
    odd = "100% ?, %s, %(x)s, 'quoted', back\\slash, $1"  # what placeholders and literals are made of
    second = audit.record("Zoë ⚙", "test.second", "line 3 \x1b[31m " + odd,
                          {"text": "naïve " + odd, "list": [1, "two"]})
    rows = list(audit.iter_rows())
    assert [r["hash"] for r in rows] == [first, second]
    assert rows[0]["prev_hash"] == AUDIT_GENESIS and rows[1]["prev_hash"] == first
    assert first == audit_hash(AUDIT_GENESIS, rows[0]) and second == audit_hash(first, rows[1])
    assert rows[1]["actor"] == "Zoë ⚙" and rows[1]["subject"].endswith(odd)
    assert rows[1]["details"] == {"text": "naïve " + odd, "list": [1, "two"]}
    assert audit.verify().records == 2


def test_a_record_inside_a_transaction_goes_with_its_rollback(settings, db):
    audit.record("it", "test.kept", "s")
    try:
        with database.atomic():
            audit.record("it", "test.dropped", "s")
            raise RuntimeError("the action failed")
    except RuntimeError:
        pass
    assert [r["action"] for r in audit.iter_rows()] == ["test.kept"]
    assert audit.record("it", "test.after", "s") == audit.head()[1]
    assert audit.verify().records == 2


def test_record_if_appends_only_while_its_condition_holds(settings, db):
    rule = services.add_rule("plc-x", "commission-2026-chain-01", "it")
    exists = ("auto_accept_rule WHERE id = ? AND hardware = ?", (rule.id, "plc-x"))
    with database.atomic():
        assert audit.record_if(exists[0], exists[1], "it", "test.while_there", "s") is True
    with database.atomic():
        assert audit.record_if(exists[0], (rule.id, "plc-y"), "it", "test.never", "s") is False
    assert [r["action"] for r in audit.iter_rows()][-1] == "test.while_there"
    assert audit.verify().records == 2


def test_record_if_sees_what_a_writer_committed_while_it_waited(settings, db, engine):
    """The condition is read once the chain's lock is held: a rule removed
    by a writer that held the lock before is seen, and nothing is appended."""
    rule = services.add_rule("plc-x", "commission-2026-chain-02", "it")
    holding, release = threading.Event(), threading.Event()
    outcome: list = []

    def remover() -> None:
        try:
            with database.atomic("IMMEDIATE"):
                database.execute_sql("DELETE FROM auto_accept_rule WHERE id = ?", (rule.id,))
                holding.set()
                release.wait(timeout=30)
        finally:
            database.close()

    def appender() -> None:
        # on SQLite a transaction that writes must begin by taking the write lock (as every writer there does)
        try:
            with database.atomic() if engine == "postgresql" else database.atomic("IMMEDIATE"):
                outcome.append(audit.record_if("auto_accept_rule WHERE id = ?", (rule.id,), "it", "test.late", "s"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome.append(exc)
        finally:
            database.close()

    first = threading.Thread(target=remover)
    first.start()
    assert holding.wait(timeout=30)
    second = threading.Thread(target=appender)
    second.start()
    if engine == "postgresql":  # until its statement is seen waiting for the writers' lock
        _until_waiting_for_the_lock(settings.database_url)
        assert second.is_alive() and not outcome
    else:  # waiting for the database's write lock in its BEGIN IMMEDIATE, which nothing outside shows
        time.sleep(0.5)
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert outcome == [False]
    assert "test.late" not in [r["action"] for r in audit.iter_rows()]
    assert audit.verify().records == 1


def _until_waiting_for_the_lock(url: str, timeout: float = 30.0) -> None:
    watcher = psycopg2.connect(url)
    try:
        watcher.autocommit = True
        deadline = time.monotonic() + timeout
        while True:
            cursor = watcher.cursor()
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                           "AND objid = %s", (WRITE_LOCK & 0xFFFFFFFF,))
            if cursor.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "nobody waited for the writers' lock"
            time.sleep(0.01)
    finally:
        watcher.close()


def test_many_writers_at_once_make_one_chain(settings, db, engine):
    start = threading.Barrier(8)
    failures: list = []

    def work(part: int) -> None:
        start.wait(timeout=30)
        try:
            for i in range(25):
                if i % 2:  # in a transaction of its own, which takes the writers' lock as it begins
                    audit.record(f"writer {part}", "test.many", f"{part}-{i}")
                    continue
                # inside a caller's transaction: on PostgreSQL a plain one (an enrollment's), whose
                # record takes the lock; on SQLite a writer's, which holds the write lock already
                with database.atomic() if engine == "postgresql" else database.atomic("IMMEDIATE"):
                    audit.record(f"writer {part}", "test.many", f"{part}-{i}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        finally:
            database.close()

    at_once(work)
    assert not failures
    rows = list(audit.iter_rows())
    assert len(rows) == 200 and len({r["prev_hash"] for r in rows}) == 200  # no two links on the same head
    assert audit.verify().records == 200
    if engine == "postgresql":  # the lock is the writers' lock: nobody holds it now
        (free,) = database.execute_sql("SELECT pg_try_advisory_xact_lock(?)", (WRITE_LOCK,)).fetchone()
        assert free is True
