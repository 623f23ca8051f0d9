"""Group commit of check-ins: concurrent check-ins share one transaction,
each is answered only after it commits, a revoked token stores nothing, a
failed transaction keeps nothing of any check-in in it and tells each one."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psycopg2
import pytest

from server.db import engine_of
from server.devices import services
from server.devices.exceptions import InvalidTokenError
from server.devices.group_commit import GroupCommit
from server.devices.records import Checkin
from server.devices.views import checkin_database
from server.devices.writes import _gate_for
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted, counts


def _fleet(settings, db, n: int, prefix: str):
    return [services.authenticate(db, accepted(settings, SimDevice(f"{prefix}-{i}")).token) for i in range(n)]


def _checkins(home) -> dict[str, int]:
    con = homedb.connect(home)
    try:
        return dict(con.execute("SELECT device_id, checkins FROM device"))
    finally:
        con.close()


def _in_threads(calls) -> list:
    """Run each call in its own thread; their results (or exceptions) in order."""
    out: list = [None] * len(calls)

    def run(i, call):
        try:
            out[i] = call()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, out


def _until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@contextlib.contextmanager
def _writer_held(db):
    """Keep the check-in writer from writing: on SQLite, hold the write gate;
    on PostgreSQL (check-ins do not take the gate there), lock the device
    table against writes in another session."""
    if engine_of(db) != "postgresql":
        with _gate_for(db).hold(db):
            yield
        return
    con = psycopg2.connect(db.database)
    try:
        con.cursor().execute("LOCK TABLE device IN EXCLUSIVE MODE")  # reads go on; UPDATEs wait
        yield
    finally:
        con.rollback()
        con.close()


def _gathered(db, writer: GroupCommit, first: list, then: list) -> tuple[list, list]:
    """Hold the writer (``_writer_held``); start ``first`` and let the writer
    take them (it then waits), start ``then``, which gather in the queue
    meanwhile; let the writer go.  The results (or exceptions) of both."""
    with _writer_held(db):
        threads, out_first = _in_threads(first)
        _until(lambda: writer.received == len(first), "the writer took the first check-ins")
        time.sleep(0.1)  # the writer is past its gathering, waiting at the gate
        more, out_then = _in_threads(then)
        threads += more
        _until(lambda: writer._queue.qsize() == len(then), "the others are queued")  # noqa: SLF001
        assert writer.batches == 0 and not any(out_first + out_then), "answered before any commit"
    for t in threads:
        t.join(10)
    return out_first, out_then


def _checkin_calls(settings, db, writer, devices, firmware="1.0.1", metrics=None):
    metrics = metrics or {}
    return [lambda d=d: services.record_checkin(settings, db, d, Checkin(firmware, metrics.get(d.device_id, {})),
                                                writer=writer) for d in devices]


def test_concurrent_checkins_share_one_transaction(settings, db, home):
    devices = _fleet(settings, db, 12, "g")
    writer = GroupCommit(db)
    first, then = _gathered(db, writer,
                            *(_checkin_calls(settings, db, writer, part) for part in (devices[:1], devices[1:])))
    assert all(r.checkin_interval == settings.checkin_interval for r in first + then), first + then
    assert writer.batches == 2  # the first alone, then the eleven that gathered meanwhile
    assert set(_checkins(home).values()) == {1}
    assert counts(home)["metric_sample"] == len(devices)


def test_one_device_twice_in_a_gathering_is_stored_twice(settings, db, home):
    [device] = _fleet(settings, db, 1, "twice")
    writer = GroupCommit(db)
    calls = _checkin_calls(settings, db, writer, [device] * 3)
    first, then = _gathered(db, writer, calls[:1], calls[1:])
    assert not any(isinstance(r, Exception) for r in first + then)
    assert writer.batches == 3  # the two that gathered went in transactions of their own
    assert _checkins(home) == {"twice-0": 3}  # none overwrote another
    assert counts(home)["metric_sample"] == 3


def test_a_revoked_token_stores_nothing_and_the_rest_are_stored(settings, db, home):
    devices = _fleet(settings, db, 4, "rv")
    services.reject("rv-2", "it")  # after authentication, before the write
    writer = GroupCommit(db)
    calls = _checkin_calls(settings, db, writer, devices)
    first, then = _gathered(db, writer, calls[:1], calls[1:])
    assert [isinstance(r, InvalidTokenError) for r in first + then] == [False, False, True, False]
    assert writer.batches == 2
    assert _checkins(home) == {"rv-0": 1, "rv-1": 1, "rv-2": 0, "rv-3": 1}
    assert counts(home)["metric_sample"] == 3


def test_a_failed_transaction_keeps_nothing_and_every_checkin_hears_why(settings, db, home):
    devices = _fleet(settings, db, 5, "fail")
    con = homedb.connect(home)
    if engine_of(db) == "postgresql":
        con.execute("CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.data LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned sample'; END IF; RETURN NEW; END $$")
        con.execute("CREATE TRIGGER poison BEFORE INSERT ON metric_sample FOR EACH ROW EXECUTE FUNCTION poison()")
    else:
        con.execute("CREATE TRIGGER poison BEFORE INSERT ON metric_sample WHEN NEW.data LIKE '%poison%' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned sample'); END")
    con.commit()
    con.close()
    writer = GroupCommit(db)
    before = counts(home)
    calls = _checkin_calls(settings, db, writer, devices, metrics={"fail-3": {"gauges": {"poison": 1}}})
    first, then = _gathered(db, writer, calls[:1], calls[1:])
    assert not isinstance(first[0], Exception)
    assert all(isinstance(r, Exception) and "poisoned sample" in str(r) for r in then), then
    assert counts(home)["metric_sample"] == before["metric_sample"] + 1  # the first transaction only
    assert _checkins(home) == {"fail-0": 1, "fail-1": 0, "fail-2": 0, "fail-3": 0, "fail-4": 0}
    # the writer goes on after a failure
    services.record_checkin(settings, db, devices[1], Checkin("1.0.1", {}), writer=writer)
    assert _checkins(home)["fail-1"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_gets_its_own_writer(settings, db, home):
    devices = _fleet(settings, db, 2, "fork")
    writer = GroupCommit(db)
    services.record_checkin(settings, db, devices[0], Checkin("1.0.1", {}), writer=writer)
    db.close()
    pid = os.fork()
    if pid == 0:  # the child: the parent's writer thread does not exist here
        code = 1
        try:
            services.record_checkin(settings, db, devices[1], Checkin("1.0.1", {}), writer=writer)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _checkins(home) == {"fork-0": 1, "fork-1": 1}


def test_a_checkin_not_taken_in_time_is_answered_503_and_never_written(settings, db, home, monkeypatch):
    from server.devices import group_commit
    from server.devices.exceptions import DeviceError

    [device] = _fleet(settings, db, 1, "slow")
    [busy] = _fleet(settings, db, 1, "busy")
    monkeypatch.setattr(group_commit, "WAIT", 0.3)
    writer = GroupCommit(db)
    # the writer is stuck on an earlier check-in for longer than a request may wait
    with _writer_held(db):
        threads, out = _in_threads(_checkin_calls(settings, db, writer, [busy]))
        _until(lambda: writer.received == 1, "the writer took the earlier check-in")
        with pytest.raises(DeviceError) as refused:
            services.record_checkin(settings, db, device, Checkin("1.0.1", {}), writer=writer)
    threads[0].join(10)
    # SQLite: the writer waits at the gate before it claims the earlier one, which is withdrawn too;
    # PostgreSQL: it claimed it and waits on the row lock inside the transaction, which then commits
    busy_stored = engine_of(db) == "postgresql"
    assert isinstance(out[0], DeviceError) != busy_stored, out
    assert refused.value.status == 503 and refused.value.extra["retry_after"] == 30
    assert "check in again later" in str(refused.value).lower()
    # the writer, let through at last, does not write the withdrawn check-in
    services.record_checkin(settings, db, _fleet(settings, db, 1, "after")[0], Checkin("1.0.1", {}), writer=writer)
    assert _checkins(home) == {"slow-0": 0, "busy-0": int(busy_stored), "after-0": 1}


def test_a_transaction_that_cannot_begin_tells_every_checkin(settings, db, home, monkeypatch):
    """If the batch cannot be written at all (SQLite: its write lock cannot
    be had, another program held it past the busy timeout; PostgreSQL: its
    one statement fails), each check-in hears that, not that its token is
    bad, and nothing is stored."""
    import contextlib

    from peewee import OperationalError

    from server.devices import checkins, group_commit

    devices = _fleet(settings, db, 3, "locked")

    @contextlib.contextmanager
    def locked(_db, serial=True):
        raise OperationalError("database is locked")
        yield  # pragma: no cover - never reached

    real = checkins.execute_prepared

    def refused(db, name, *args):  # the batch's statement only: the token is checked as always
        if name == "airlock_store_checkins":
            raise OperationalError("the database is locked for this test")
        return real(db, name, *args)

    if engine_of(db) == "postgresql":
        monkeypatch.setattr(checkins, "execute_prepared", refused)
    else:
        monkeypatch.setattr(group_commit, "writing", locked)
    writer = GroupCommit(db)
    threads, out = _in_threads(_checkin_calls(settings, db, writer, devices))
    for t in threads:
        t.join(10)
    assert all(isinstance(r, OperationalError) and "locked" in str(r) for r in out), out
    assert set(_checkins(home).values()) == {0}


def test_a_gathering_larger_than_a_batch_is_split(settings, db, home):
    devices = _fleet(settings, db, 10, "big")
    writer = GroupCommit(db, max_batch=4)
    calls = _checkin_calls(settings, db, writer, devices)
    first, then = _gathered(db, writer, calls[:1], calls[1:])
    assert not any(isinstance(r, Exception) for r in first + then), first + then
    assert writer.batches == 1 + 3  # the first alone, then the nine that gathered: 4 + 4 + 1
    assert set(_checkins(home).values()) == {1}


def test_the_writer_reconnects_after_the_database_dropped_its_connection(settings, db, home):
    """PostgreSQL restarted, or dropped the writer's connection: the batch in
    flight fails (its devices check in again), and the next batch is written
    on a new connection, not refused for the worker's life."""
    from peewee import PeeweeException

    devices = _fleet(settings, db, 3, "drop")
    writer = GroupCommit(checkin_database(settings))
    services.record_checkin(settings, db, devices[0], Checkin("1.0.0", {}), writer=writer)
    if engine_of(db) == "postgresql":  # every other backend of this database: the writer's among them
        killer = psycopg2.connect(settings.database_url)
        killer.autocommit = True
        killer.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        killer.close()
        db.close_all()
        with pytest.raises(PeeweeException):
            services.record_checkin(settings, db, devices[1], Checkin("1.0.0", {}), writer=writer)
    else:  # a SQLite file has no server to drop it: the writer simply goes on
        services.record_checkin(settings, db, devices[1], Checkin("1.0.0", {}), writer=writer)
    services.record_checkin(settings, db, devices[2], Checkin("1.0.0", {}), writer=writer)
    expected_second = 0 if engine_of(db) == "postgresql" else 1
    assert _checkins(home) == {"drop-0": 1, "drop-1": expected_second, "drop-2": 1}


def test_the_apps_writer_plans_its_batch_statement_once(settings, db, home):
    """On PostgreSQL the app's check-in writer runs its batch statement on a
    generic plan (server.devices.views.checkin_writer_database): left to
    choose, PostgreSQL planned it again for every batch, and planning cost
    more than running it.  A connection without the setting is the control."""
    from server import create_app
    from server.devices.views import api_state

    devices = _fleet(settings, db, 6, "plan")
    writer_db = api_state(create_app(settings)).checkin_writer.db
    plain_db = checkin_database(settings)
    try:
        for i, device in enumerate(devices):  # written on this thread's connection of each: a batch each
            services.record_checkin(settings, writer_db if i % 2 else plain_db, device, Checkin("1.0.1", {}))
        assert all(count == 1 for count in _checkins(home).values()), _checkins(home)
        if engine_of(db) != "postgresql":  # SQLite prepares each statement in the connection's cache: nothing to plan
            return
        plans = "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'airlock_store_checkins'"
        assert writer_db.execute_sql(plans).fetchone() == (3, 0)
        assert plain_db.execute_sql(plans).fetchone() == (0, 3)  # the control: custom plans (the first five always)
    finally:
        for opened in (writer_db, plain_db):
            getattr(opened, "close_all", opened.close)()  # a pool on PostgreSQL


def test_a_checkin_waiting_for_its_commit_holds_no_connection_of_the_checkins_pool(settings, db, home):
    """On PostgreSQL a check-in gives its connection back once its token is
    checked: while it waits for the writer's commit, the worker's other
    check-ins can use it (the writer has its own), so a worker's check-ins
    share a few connections instead of holding one each."""
    from server import create_app
    from server.devices.views import api_state, checkin_answer

    devices = [accepted(settings, SimDevice(f"pool-{i}")) for i in range(4)]
    api = api_state(create_app(settings))
    body = {"firmware": "1.0.0", "metrics": {"uptime_s": 60}}  # the version it runs: nothing to look up
    try:
        with _writer_held(db):
            threads, out = _in_threads([lambda d=d: checkin_answer(api, d.token, lambda: body, "127.0.0.1")
                                        for d in devices])
            writer = api.checkin_writer
            _until(lambda: writer.received + writer._queue.qsize() == len(devices),  # noqa: SLF001
                   "every check-in was handed to the writer")
            assert not any(out), "answered before the commit"
            if engine_of(db) == "postgresql":
                assert len(api.checkin_db._in_use) == 0  # noqa: SLF001 - the pool's connections handed out
                assert len(api.checkin_db._connections) >= 1  # noqa: SLF001 - given back, not closed
        for t in threads:
            t.join(10)
        assert all(isinstance(answer, dict) and answer["checkin_interval"] == settings.checkin_interval
                   for answer in out), out
        assert _checkins(home) == {d.device_id: 1 for d in devices}
    finally:
        if engine_of(db) == "postgresql":
            api.checkin_db.close_all()
            api.checkin_writer.db.close_all()
