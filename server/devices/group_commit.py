"""Group commit for check-ins: one writer thread per worker process.

Check-ins are most of the appliance's writes, and SQLite takes one writer at
a time.  Written one by one, every check-in pays for the write gate, a
``BEGIN IMMEDIATE`` and a commit, and holds the write lock while its thread
waits for the GIL between statements; at a few thousand a second that, not
the work, was the ceiling.  Here a request thread hands its check-in to the
worker's writer thread and waits; the writer takes everything queued (up to
``MAX_BATCH``, each device once) and writes it in one transaction of two
statements (``server.devices.checkins.store_checkins``).  A request is
answered only after the transaction holding its check-in has committed, so
what a device is told was stored, was stored; if the transaction fails, every
check-in in it gets the error and nothing of it is kept.

While one batch is being written the next one gathers, so the batches grow
with the load and the cost per check-in falls as it rises; a lone check-in
is written at once.  The writer is started on first use in the process that
uses it (after gunicorn forks), and restarted if it ever stops.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque

from peewee import SqliteDatabase

from server.devices.checkins import PendingCheckin, store_checkins
from server.devices.exceptions import DeviceError

logger = logging.getLogger(__name__)

MAX_BATCH = 256  # check-ins per transaction (8 bound values each; SQLite allows 32,766)
WAIT = 60.0  # seconds a request waits for its commit before it gives up (gunicorn's timeout)


class _Slot:
    __slots__ = ("checkin", "done", "stored", "error")

    def __init__(self, checkin: PendingCheckin):
        self.checkin = checkin
        self.done = threading.Event()
        self.stored = False
        self.error: BaseException | None = None


class GroupCommit:
    """``store(checkin)`` from any thread: True once committed, False if the
    device's token was revoked meanwhile; raises what the commit raised."""

    def __init__(self, db: SqliteDatabase, *, max_batch: int = MAX_BATCH):
        self.db = db
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.received = 0  # check-ins the writer has taken off the queue
        self.batches = 0  # transactions committed

    def store(self, checkin: PendingCheckin) -> bool:
        slot = _Slot(checkin)
        self._ensure_writer().put(slot)
        if not slot.done.wait(WAIT):
            raise DeviceError(f"the check-in was not stored within {WAIT:.0f} s; the appliance is overloaded. "
                              "Check in again later", code="unavailable", status=503, retry_after=30)
        if slot.error is not None:
            raise slot.error
        return slot.stored

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
                self._commit(list(batch.values()))
        finally:
            if not self.db.is_closed():
                self.db.close()

    def _take(self, slot: _Slot, batch: dict[int, _Slot], later: deque[_Slot], *, new: bool = True) -> None:
        self.received += new
        if slot.checkin.device in batch:
            later.append(slot)
        else:
            batch[slot.checkin.device] = slot

    def _commit(self, batch: list[_Slot]) -> None:
        try:
            stored = store_checkins(self.db, [s.checkin for s in batch])
            self.batches += 1
            for slot in batch:
                slot.stored = slot.checkin.device in stored
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request, which answers with it
            logger.warning("a group commit of %d check-ins failed: %s", len(batch), exc)
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                slot.done.set()
