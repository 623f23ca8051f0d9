"""Enrollment reads first and writes in a short transaction whose every write
depends on what it read (server.devices.enrollment, ``_plan``): what changes
between the two is seen, and the serial path decides from scratch.  Each
test makes the change happen in exactly that gap, on SQLite and PostgreSQL,
and many enrollments at once keep the audit chain whole."""

from __future__ import annotations

import threading
import time

import pytest

from server import audit
from server.devices import enrollment, services
from server.devices.exceptions import DeviceRefusedError, InvalidTokenError
from server.models import database
from tests.functional.devices.client import SimDevice
from tests.unit.server.devices.conftest import accepted, at_once, request_for

TOKEN = "commission-2026-races-01"


def _between(monkeypatch, change):
    """Run ``change`` once, after the next enrollment has read and before it writes."""
    planned = enrollment._plan
    calls = []

    def plan_then_change(req):
        plan = planned(req)
        if not calls:
            calls.append(plan)
            change()
        return plan

    monkeypatch.setattr(enrollment, "_plan", plan_then_change)
    return calls


def _actions(subject: str) -> list[str]:
    return [r["action"] for r in audit.iter_rows() if r["subject"] == subject]


def test_a_rule_removed_after_the_read_accepts_nobody(settings, db, monkeypatch):
    rule = services.add_rule("plc-x", TOKEN, "it")
    services.add_rule("plc-y", TOKEN, "it")  # another model's rule stays
    calls = _between(monkeypatch, lambda: services.remove_rule(rule.id, "it"))
    result = services.enroll(settings, request_for(SimDevice("r-1"), enrollment_token=TOKEN))
    assert calls[0].rule == rule.id  # the read saw the rule
    assert (result.state, result.token) == ("pending", None)
    assert services.get_device(settings, "r-1").state == "pending"
    assert "device.auto_accept" not in _actions("r-1")
    assert audit.verify().records == 3  # two rules added, one removed


def test_a_device_that_enrolled_after_the_read_is_one_device(settings, db, monkeypatch):
    services.add_rule("plc-x", TOKEN, "it")
    device = SimDevice("r-2")
    first: list = []
    calls = _between(monkeypatch, lambda: first.append(
        services.enroll(settings, request_for(device, enrollment_token=TOKEN))))
    second = services.enroll(settings, request_for(device, enrollment_token=TOKEN))
    assert calls[0].device is None  # read as new, then found enrolled by the other request
    assert first[0].state == second.state == "accepted"
    with pytest.raises(InvalidTokenError):  # the later enrollment's token replaced the earlier one
        services.authenticate(db, first[0].token)
    assert services.authenticate(db, second.token).device_id == "r-2"
    assert _actions("r-2") == ["device.auto_accept"]
    assert [d.device_id for d in services.list_devices(settings)].count("r-2") == 1


def test_a_key_retired_after_the_read_gets_no_token(settings, db, monkeypatch):
    device = accepted(settings, SimDevice("r-3"))
    successor = SimDevice("r-3")
    services.enroll(settings, request_for(successor))  # a new key, pending
    calls = _between(monkeypatch, lambda: services.accept("r-3", "it", new_key=True))
    with pytest.raises(DeviceRefusedError) as refused:
        services.enroll(settings, request_for(device))
    assert calls[0].key is not None  # read while the old key was active
    assert refused.value.extra["state"] == "key_retired"
    with pytest.raises(InvalidTokenError):
        services.authenticate(db, device.token)
    assert services.enroll(settings, request_for(successor)).token


def test_a_device_rejected_after_the_read_gets_no_token(settings, db, monkeypatch):
    device = accepted(settings, SimDevice("r-4"))
    _between(monkeypatch, lambda: services.reject("r-4", "it", reason="stolen"))
    with pytest.raises(DeviceRefusedError) as refused:
        services.enroll(settings, request_for(device))
    assert refused.value.extra["state"] == "rejected"
    assert services.get_device(settings, "r-4").state == "rejected"


def test_a_replay_is_refused_on_the_short_path_too(settings, db):
    device = accepted(settings, SimDevice("r-5"))
    request = request_for(device)
    assert services.enroll(settings, request).token
    with pytest.raises(enrollment.ReplayError):
        services.enroll(settings, request)


def test_many_enrollments_at_once_all_land_and_the_audit_chain_holds(settings, db):
    services.add_rule("plc-x", TOKEN, "it")
    fleet = [SimDevice(f"herd-{i:03d}") for i in range(48)]
    requests = [request_for(d, enrollment_token=TOKEN) for d in fleet]
    again = [request_for(d, enrollment_token=TOKEN) for d in fleet[:16]]  # the same devices, twice
    results: dict[int, object] = {}
    start = threading.Barrier(8)

    def work(part: int) -> None:
        start.wait(timeout=30)
        for i, req in enumerate((requests + again)[part::8]):
            try:
                results[part * 1000 + i] = services.enroll(settings, req)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                results[part * 1000 + i] = exc
            finally:
                db.close()

    at_once(work)
    assert len(results) == len(requests) + len(again)
    assert all(getattr(r, "state", None) == "accepted" for r in results.values()), results
    assert sorted(d.device_id for d in services.list_devices(settings)) == sorted(d.device_id for d in fleet)
    report = audit.verify()
    accepts = [r for r in audit.iter_rows() if r["action"] == "device.auto_accept"]
    assert sorted(r["subject"] for r in accepts) == sorted(d.device_id for d in fleet)
    assert report.records == len(accepts) + 1  # and the rule's own record


def test_a_rule_replaced_after_the_read_does_not_accept_the_old_token(settings, db, monkeypatch):
    """IT rotates a leaked token: the rule removed and one added for a new
    token (on SQLite it gets the removed rule's id again)."""
    old = services.add_rule("plc-x", TOKEN, "it")
    _between(monkeypatch, lambda: (services.remove_rule(old.id, "it"),
                                   services.add_rule("plc-x", "commission-2026-races-02", "it")))
    result = services.enroll(settings, request_for(SimDevice("r-6"), enrollment_token=TOKEN))
    assert (result.state, result.token) == ("pending", None)
    assert "device.auto_accept" not in _actions("r-6")


def test_a_device_removed_after_the_read_and_its_ids_taken_gets_nothing(settings, db, monkeypatch):
    """The device (the newest row, with the newest key) is removed and
    another device enrolls: on SQLite it gets the removed rows' ids."""
    services.add_rule("plc-x", TOKEN, "it")
    device = accepted(settings, SimDevice("r-7"))

    def remove_and_replace():
        services.remove_device(settings, "r-7", "it")
        services.enroll(settings, request_for(SimDevice("r-8"), enrollment_token=TOKEN))

    _between(monkeypatch, remove_and_replace)
    result = services.enroll(settings, request_for(device))
    assert (result.state, result.token) == ("pending", None)  # as the serial path: a new, unknown device
    assert services.get_device(settings, "r-7").state == "pending"
    assert services.get_device(settings, "r-8").state == "accepted"


def test_a_rule_removed_after_the_device_row_and_before_the_audit_lock_accepts_nobody(settings, db, monkeypatch,
                                                                                     engine):
    """PostgreSQL: the new device's row is written (its rule was there),
    and IT removes the rule before the enrollment's audit record takes the
    writers' lock.  The record reads the rule once the lock is held, finds
    it gone, appends nothing, and the serial path makes the device pending.
    On SQLite the enrollment's transaction holds the one write lock from
    its first write, so no removal gets in between: nothing to race."""
    rule = services.add_rule("plc-x", TOKEN, "it")
    appended = audit.record_if
    removals: list = []

    def removed_first(*args, **kwargs):
        if not removals:  # the removal commits on its own connection while this transaction waits
            def remove() -> None:
                try:
                    removals.append(services.remove_rule(rule.id, "it"))
                finally:
                    database.close()

            remover = threading.Thread(target=remove)
            remover.start()
            remover.join(timeout=30)
            assert removals, "the removal did not commit"
        return appended(*args, **kwargs)

    monkeypatch.setattr(audit, "record_if", removed_first)
    result = services.enroll(settings, request_for(SimDevice("r-9"), enrollment_token=TOKEN))
    if engine == "postgresql":
        assert len(removals) == 1
        assert (result.state, result.token) == ("pending", None)
        assert services.get_device(settings, "r-9").state == "pending"
        assert "device.auto_accept" not in _actions("r-9")
        assert audit.verify().records == 2  # the rule added, and removed
    else:
        assert removals == [] and result.state == "accepted"
        assert audit.verify().records == 2  # the rule added, and the device auto-accepted


@pytest.mark.parametrize("admission", ["remove", "accept_new_key", "reject"])
def test_a_new_token_and_an_admission_at_once_never_deadlock(settings, db, monkeypatch, engine, admission):
    """The enrollment holds its device row (PostgreSQL) or the write gate
    (SQLite) while the admission starts, which waits for it; neither fails,
    and the admission, second, revokes the token the enrollment issued."""
    device = accepted(settings, SimDevice("r-9"))
    successor = SimDevice("r-9")
    services.enroll(settings, request_for(successor))  # a pending new key, for accept_new_key
    database = type(db)
    original = database.execute_sql
    holding = enrollment._LOCK_DEVICE if engine == "postgresql" else enrollment._REISSUE
    locked = threading.Event()

    def slow(self, sql, params=None, *args, **kwargs):
        cursor = original(self, sql, params, *args, **kwargs)
        if sql == holding and threading.current_thread().name == "enroller":
            locked.set()
            time.sleep(0.5)  # the admission now waits for this row
        return cursor

    monkeypatch.setattr(database, "execute_sql", slow)
    out: dict = {}

    def run(name, action):
        try:
            out[name] = action()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            out[name] = exc
        finally:
            db.close()

    admit = {"remove": lambda: services.remove_device(settings, "r-9", "it"),
             "accept_new_key": lambda: services.accept("r-9", "it", new_key=True),
             "reject": lambda: services.reject("r-9", "it")}[admission]
    enroller = threading.Thread(target=run, args=("enroll", lambda: services.enroll(settings, request_for(device))),
                                name="enroller")
    admitter = threading.Thread(target=run, args=("admit", lambda: (locked.wait(10), admit())))
    enroller.start()
    admitter.start()
    enroller.join(60)
    admitter.join(60)
    assert locked.is_set() and not any(isinstance(v, Exception) for v in out.values()), out
    assert out["enroll"].token
    with pytest.raises(InvalidTokenError):  # the admission came second: the token it revoked is gone
        services.authenticate(db, out["enroll"].token)


def test_a_deadlock_with_another_box_enrolling_the_same_new_device_runs_the_enrollment_again(
        settings, db, monkeypatch, engine, caplog):
    """PostgreSQL: this box has written the new device's row and waits for
    the writers' lock (its audit record); the other box holds that lock and
    inserts the same device id, so it waits for this row.  PostgreSQL
    aborts this enrollment as a deadlock; it runs again from the start,
    finds the other box's device, and answers as the serial path does,
    instead of 500.  On SQLite one write lock orders the two: no deadlock."""
    import psycopg2

    from server.db import WRITE_LOCK

    services.add_rule("plc-x", TOKEN, "it")
    appended = audit.record_if
    others: list = []

    def other_box_first(*args, **kwargs):
        if not others:  # once: the other box takes the lock, then inserts the same device id
            other = psycopg2.connect(settings.database_url)
            watcher = psycopg2.connect(settings.database_url)
            watcher.autocommit = True
            others.extend([other, watcher])
            with other.cursor() as cursor:  # this session is the one PostgreSQL aborts (it detects first)
                cursor.execute("SET deadlock_timeout = '20s'")
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

            def insert() -> None:
                with other.cursor() as cursor:
                    cursor.execute("INSERT INTO device (device_id, hardware, firmware, state, state_changed_at, "
                                   "state_changed_by, enrolled_at, last_enroll_at) VALUES ('r-9', 'plc-x', '1.0.0', "
                                   "'pending', 'x', 'device', 'x', 'x')")
                other.commit()

            pid = other.get_backend_pid()
            inserter = threading.Thread(target=insert)
            inserter.start()
            others.append(inserter)
            deadline = time.monotonic() + 30
            while True:  # until the other box waits for this transaction's row
                with watcher.cursor() as cursor:
                    cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
                    if cursor.fetchone() == ("Lock",):
                        break
                assert time.monotonic() < deadline, "the other box never waited for this row"
                time.sleep(0.02)
        return appended(*args, **kwargs)

    caplog.set_level("INFO", logger="server.devices.enrollment")
    if engine == "postgresql":
        monkeypatch.setattr(audit, "record_if", other_box_first)
    try:
        result = services.enroll(settings, request_for(SimDevice("r-9"), enrollment_token=TOKEN))
    finally:
        if len(others) > 2:
            others[2].join(30)
        for opened in others[:2]:
            opened.close()
    if engine == "postgresql":
        assert "aborted by the database (40P01)" in caplog.text
        assert (result.state, result.token) == ("pending", None)  # the other box's device; this key waits for IT
        assert services.get_device(settings, "r-9").state == "pending"
        assert "device.auto_accept" not in _actions("r-9")
        assert audit.verify().records == 1  # the rule added; the aborted record is gone with its transaction
    else:
        assert result.state == "accepted" and "aborted" not in caplog.text
        assert audit.verify().records == 2  # the rule added, and the device auto-accepted
