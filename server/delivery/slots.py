"""Enforcing the download caps while targets are served: a slot per
allowed concurrent download, held for the download's whole length, and a
pace that keeps the downloads of a scope within its bandwidth.

Slots hold across gunicorn workers and survive none of their crashes: slot
``k`` of a scope is the file ``HOME/run/download-slots/<scope>.<k>``, held
with an exclusive, non-blocking ``flock`` on a descriptor opened for this
one download.  ``flock`` locks belong to the open file description, so two
threads of one worker conflict like two workers do, and the kernel drops
the lock the moment the descriptor closes: when the download ends, when
the client goes away (the WSGI body is closed), and when a worker is killed
(``kill -9``, the OOM killer, gunicorn's timeout), so no slot outlives its
download, and nothing needs to expire.  Taking a slot is at most
``max_downloads`` ``open``+``flock`` calls (from a random slot, so that
concurrent downloads rarely try the same files) and no database write.

A download that finds every slot of one of its scopes taken is answered
``503`` with ``Retry-After`` at once, before any byte of the file: the
appliance's scope and, for a device in capped groups (found by its address,
``server.delivery.caps``), each of its groups.  Metadata polls and
check-ins never come here.

Bandwidth: a scope with ``max_bytes_per_second`` B and ``max_downloads`` C
paces each download to B / C, so that C downloads together never exceed B
(a lone download does not go faster: the cap is a promise to the LAN, and
knowing how many downloads run in the other workers would cost a shared
counter on every chunk).  A download in several scopes takes the slowest
pace.  These caps hold per appliance box; several app servers behind a
load balancer each enforce their own.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from server.delivery.caps import Cap

logger = logging.getLogger(__name__)

PACE_CHUNK = 64 * 1024  # bytes sent between looks at the clock when pacing
MAX_SLEEP = 1.0  # seconds slept at a time, so a closed connection is noticed


@dataclass
class Ticket:
    """The slots one download holds, and its pace (bytes/s, 0: unpaced)."""

    fds: list[int]
    pace: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> None:
        with self._lock:
            fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)  # the kernel drops the flock with the descriptor


@dataclass(frozen=True)
class Busy:
    """Why a download was refused, and when to come back."""

    cap: Cap
    retry_after: int  # seconds

    def message(self) -> str:
        where = "this appliance" if self.cap.scope == "appliance" else f"the group {self.cap.scope[6:]}"
        return (f"{where} is serving its maximum of {self.cap.max_downloads} concurrent firmware downloads: "
                f"come back after {self.retry_after} seconds (Retry-After); metadata and check-ins are not "
                "affected\n")


class DownloadSlots:
    """The slot files of one appliance home."""

    def __init__(self, folder: Path, retry_after: int):
        self.folder = folder
        self.retry_after = retry_after  # seconds, before jitter
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)

    def _take(self, cap: Cap) -> int | None:
        first = random.randrange(cap.max_downloads)
        for i in range(cap.max_downloads):
            k = (first + i) % cap.max_downloads
            fd = os.open(self.folder / f"{cap.scope.replace(':', '-')}.{k}",
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def admit(self, caps: list[Cap]) -> Ticket | Busy:
        """Take a slot in every capped scope of ``caps``, or none at all."""
        ticket = Ticket([], 0)
        for cap in caps:
            if not cap.max_downloads:
                continue
            fd = self._take(cap)
            if fd is None:
                ticket.release()
                # jitter: refused devices must not all come back in the same second
                return Busy(cap, self.retry_after + random.randrange(self.retry_after // 2 + 1))
            ticket.fds.append(fd)
            if cap.per_download:
                ticket.pace = min(ticket.pace or cap.per_download, cap.per_download)
        return ticket


def paced(body: Iterable[bytes], rate: int, clock=time.monotonic, sleep=time.sleep) -> Iterator[bytes]:
    """``body``'s bytes at no more than ``rate`` bytes per second: by any
    moment ``t`` seconds after the start, at most ``rate * t`` bytes."""
    started, sent = clock(), 0
    try:
        for chunk in body:
            for i in range(0, len(chunk), PACE_CHUNK):
                piece = chunk[i:i + PACE_CHUNK]
                sent += len(piece)
                # never ahead: by any moment t, at most rate * t bytes have gone out
                ahead = sent / rate - (clock() - started)
                while ahead > 0:
                    sleep(min(ahead, MAX_SLEEP))
                    ahead = sent / rate - (clock() - started)
                yield piece
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()  # the file under it, however the client left
