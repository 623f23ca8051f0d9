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
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

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

    @contextmanager
    def hold(self):
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)


def _gate_for(db) -> _WriteGate:
    target = getattr(db, "obj", None) or db  # a peewee DatabaseProxy, or the database
    path = str(target.database) + "-write.lock"
    with _gates_lock:
        gate = _gates.get(path)
        if gate is None:
            gate = _gates[path] = _WriteGate(Path(path))
        return gate


def write_gate(db) -> AbstractContextManager[None]:
    """``with write_gate(db):`` hold the gate without a transaction, e.g. to
    finish work on files after a transaction commits, before the next writer."""
    return _gate_for(db).hold()


@contextmanager
def writing(db):
    """``with writing(db):`` a ``BEGIN IMMEDIATE`` transaction on ``db``, taken
    through the gate; raising inside rolls it back."""
    with _gate_for(db).hold(), db.atomic("IMMEDIATE"):
        yield
