"""Group commit for check-ins: one writer thread per worker process.

Check-ins are most of the appliance's writes, and SQLite takes one writer at
a time.  Written one by one, every check-in paid for the write gate, a
``BEGIN IMMEDIATE`` and a commit, and held the write lock across several
statements, with its thread competing for the GIL between them; at about
1,600 a second the workers then stood idle part of the time (measured in
docs/benchmarks.md).  Here a request thread hands its check-in to the
worker's writer thread and waits; the writer takes everything queued (up to
``MAX_BATCH``, each device once) and writes it in one transaction of two
statements (``server.devices.checkins.write_checkins``; on PostgreSQL one
prepared statement, a transaction by itself; should reading its answer
fail after it committed, every check-in in it is told of the error although
it was stored, and its device checks in again: one sample more, nothing
lost).  A request is
answered only after the transaction holding its check-in has committed, so
what a device is told was stored, was stored; if the transaction fails, every
check-in in it gets the error and nothing of it is kept.  A request that
waits longer than ``WAIT`` for a writer that has not yet taken its check-in
withdraws it (503, nothing stored); one already taken waits for its commit.

While one batch is being written the next one gathers, so the batches grow
with the load and the cost per check-in falls as it rises; a lone check-in
is written at once.  The writer is started on first use in the process that
uses it (after gunicorn forks), and restarted if it ever stops.

On PostgreSQL the same batches are written by each worker of each app server
at once, without the writers' lock: the batch's rows are sorted by id (which makes
crosswise waits between two batches unlikely; the plan decides the order
PostgreSQL locks them in), and a transaction
PostgreSQL still aborts as a deadlock or a serialization failure is written
again (up to ``RETRIES`` times) before any request hears of it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from contextlib import nullcontext
from typing import Any

from peewee import SqliteDatabase

from server.db import engine_of, retryable
from server.devices.checkins import PendingCheckin, ReadWithWrite, write_checkins
from server.devices.exceptions import UnavailableError
from server.devices.writes import writing

logger = logging.getLogger(__name__)

MAX_BATCH = 256  # check-ins per transaction (8 bound values each; SQLite allows 32,766)
RETRIES = 3  # PostgreSQL: times a batch aborted by a deadlock or serialization failure is written again
WAIT = 60.0  # seconds a request waits for its commit before it gives up (gunicorn's timeout)


class _Slot:
    __slots__ = ("checkin", "done", "stored", "reads", "error", "lock", "claimed", "cancelled")

    def __init__(self, checkin: PendingCheckin):
        self.checkin = checkin
        self.done = threading.Event()
        self.stored = False
        self.reads: ReadWithWrite | None = None  # what the write read for it (PostgreSQL)
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.claimed = False  # taken into a transaction: it will be answered by that commit
        self.cancelled = False  # given up by its request before that: never written

    def claim(self) -> bool:
        with self.lock:
            if not self.cancelled:
                self.claimed = True
            return self.claimed

    def cancel(self) -> bool:
        with self.lock:
            if not self.claimed:
                self.cancelled = True
            return self.cancelled


class GroupCommit:
    """``store(checkin)`` from any thread: (True, what the write read for it)
    once committed, (False, None) if the device's token was revoked
    meanwhile; raises what the commit raised."""

    def __init__(self, db: SqliteDatabase, *, max_batch: int = MAX_BATCH):
        self.db = db
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.received = 0  # check-ins the writer has taken off the queue
        self.batches = 0  # transactions committed

    def store(self, checkin: PendingCheckin) -> tuple[bool, ReadWithWrite | None]:
        slot = _Slot(checkin)
        self._ensure_writer().put(slot)
        if not slot.done.wait(WAIT):
            if slot.cancel():  # the writer never took it, and now never will: nothing was stored
                raise UnavailableError(f"the check-in was not stored within {WAIT:.0f} s; the appliance is overloaded. "
                                  "Check in again later", retry_after=30)
            slot.done.wait()  # it is in a transaction being written: its commit answers it
        if slot.error is not None:
            raise slot.error
        return slot.stored, slot.reads

    def _ensure_writer(self) -> queue.SimpleQueue:
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            return self._queue
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                if self._pid != os.getpid():  # a forked child: the parent's queue and thread are not ours
                    self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, args=(self._queue,),
                                                 name="airlock-checkin-writer", daemon=True)
                self._thread.start()
        return self._queue

    def _run(self, slots: queue.SimpleQueue) -> None:
        held: deque[_Slot] = deque()  # a second check-in of a device already in the batch waits for the next
        try:
            while True:
                batch: dict[int, _Slot] = {}
                later: deque[_Slot] = deque()
                while held and len(batch) < self.max_batch:
                    self._take(held.popleft(), batch, later, new=False)
                if not batch:
                    self._take(slots.get(), batch, later)
                while len(batch) < self.max_batch:
                    try:
                        self._take(slots.get_nowait(), batch, later)
                    except queue.Empty:
                        break
                held.extendleft(reversed(later))
                if batch:
                    self._commit(list(batch.values()))
        finally:
            if not self.db.is_closed():
                self.db.close()

    def _take(self, slot: _Slot, batch: dict[int, _Slot], later: deque[_Slot], *, new: bool = True) -> None:
        self.received += new
        if slot.cancelled:
            return
        if slot.checkin.device in batch:
            later.append(slot)
        else:
            batch[slot.checkin.device] = slot

    def _commit(self, batch: list[_Slot]) -> None:
        claimed: list[_Slot] = []
        postgresql = engine_of(self.db) == "postgresql"
        try:
            for attempt in range(RETRIES + 1):
                try:
                    # On PostgreSQL the batch is one statement, a transaction of its own
                    # (server.devices.checkins._STORE_POSTGRESQL): no BEGIN, no COMMIT.
                    with nullcontext() if postgresql else writing(self.db, serial=False):
                        # holding the write lock now (SQLite): a request that gave up meanwhile is left out
                        claimed = [slot for slot in batch if slot.claim()]
                        if claimed:
                            claimed.sort(key=lambda slot: slot.checkin.device)
                            stored = write_checkins(self.db, [s.checkin for s in claimed])
                            for slot in claimed:
                                slot.stored = slot.checkin.device in stored
                                slot.reads = stored.get(slot.checkin.device)
                    break
                except Exception as exc:
                    if not (postgresql and attempt < RETRIES and retryable(exc)):
                        raise
                    logger.info("a group commit of %d check-ins was aborted (%s); writing it again", len(batch), exc)
            if claimed:
                self.batches += 1
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which answers with it
            logger.warning("a group commit of %d check-ins failed: %s", len(batch), exc)
            for slot in batch:  # also those not claimed yet, if the transaction could not even begin
                if not slot.cancelled:
                    slot.error = exc
            if postgresql:
                self._drop_if_broken()
        finally:
            for slot in batch:
                slot.done.set()

    def _drop_if_broken(self) -> None:
        """After a failed batch on PostgreSQL: the writer's connection, if the
        server dropped it (a restart, a terminated backend), is closed for
        good, so that the next batch opens a new one.  The writer keeps its
        connection for its life, and peewee, whose own state still says open,
        would hand the dead one out to every later batch."""
        db: Any = self.db  # a pooled AppPostgresDatabase here
        conn = getattr(db._state, "conn", None)  # the writer thread's own
        if conn is not None and conn.closed:
            db.manual_close()

