"""One writer at a time, woken at once: a gate around the device side's
SQLite write transactions.

SQLite allows one writer; a connection that finds the database locked sleeps
in its busy handler (1, 2, 5, 10 ... 100 ms) and tries again, so under many
concurrent check-ins most of the time goes to sleeping, and the unlucky
request waits for a second.  The gate queues writers instead: a lock per
process (for its threads) and an ``flock`` on ``<database>-write.lock``
(for the processes: gunicorn workers, the CLI), which the kernel hands to the
next waiter the moment it is released.  Inside the gate, ``BEGIN IMMEDIATE``
takes SQLite's write lock at once, and ``busy_timeout`` still covers writers
that do not use the gate (imports, other tools).  Re-entrant per thread.

On PostgreSQL the processes may be on several boxes: the gate's second half
is a session advisory lock (``server.db.WRITE_LOCK``, the same one every
``BEGIN IMMEDIATE`` there takes) instead of the ``flock``.  Check-ins need
no gate there (``writing(db, serial=False)``): PostgreSQL locks the rows
they update, and a revoked token is seen as on SQLite; nor do the common
enrollments, whose writes check what they read (server.devices.enrollment).
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from server.db import WRITE_LOCK, engine_of

_gates: dict[str, _WriteGate] = {}
_gates_lock = threading.Lock()


class _WriteGate:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._local = threading.local()
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own open file
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._pid = os.getpid()
        return self._fd

    def _lock_across_processes(self, db) -> None:
        fcntl.flock(self._file(), fcntl.LOCK_EX)

    def _unlock_across_processes(self, db) -> None:
        fcntl.flock(self._file(), fcntl.LOCK_UN)

    @contextmanager
    def hold(self, db=None):
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._lock:
            self._lock_across_processes(db)
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                self._unlock_across_processes(db)


class _PostgresGate(_WriteGate):
    """The gate on PostgreSQL: the thread lock, then the writers' advisory
    lock on this thread's connection, for its session."""

    def _lock_across_processes(self, db) -> None:
        db.execute_sql("SELECT pg_advisory_lock(?)", (WRITE_LOCK,))

    def _unlock_across_processes(self, db) -> None:
        db.execute_sql("SELECT pg_advisory_unlock(?)", (WRITE_LOCK,))


def _gate_for(db) -> _WriteGate:
    target = getattr(db, "obj", None) or db  # a peewee DatabaseProxy, or the database
    postgresql = engine_of(target) == "postgresql"
    key = f"postgresql:{id(target)}" if postgresql else str(target.database) + "-write.lock"
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = _PostgresGate(Path(key)) if postgresql else _WriteGate(Path(key))
        return gate


def write_gate(db) -> AbstractContextManager[None]:
    """``with write_gate(db):`` hold the gate without a transaction, e.g. to
    finish work on files after a transaction commits, before the next writer."""
    return _gate_for(db).hold(db)


@contextmanager
def writing(db, serial: bool = True):
    """``with writing(db):`` a ``BEGIN IMMEDIATE`` transaction on ``db``, taken
    through the gate; raising inside rolls it back.  ``serial=False``: on
    PostgreSQL, a plain transaction outside the gate (check-ins, enrollments)."""
    if not serial and engine_of(db) == "postgresql":
        with db.atomic():
            yield
        return
    with _gate_for(db).hold(db), db.atomic("IMMEDIATE"):
        yield
