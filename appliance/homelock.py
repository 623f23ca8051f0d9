"""A lock on a file in the appliance's home: one import at a time, one
export at a time.

A ``flock`` on HOME/state/<file> for this box, with the holder's pid written
in the file while it holds it (emptied again when it lets go); and with
several app servers on one PostgreSQL, the same lock taken in the database
for all of them (:func:`server.locks.held_across_servers`).  Never waits: a
lock held elsewhere is refused at once, with what to do.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import AbstractContextManager

from server.locks import LockBusyError, held_across_servers
from server.settings import Settings
from signing.exceptions import AirlockError


class HomeLock:
    """``with HomeLock(...):`` held, or ``error`` raised at once.

    ``file_name`` is the lock file's name under HOME/state; ``across`` the
    :mod:`server.locks` name of the lock across app servers (nothing more on
    SQLite).  A refusal reads ``"<busy>; <advice>"``: ``busy`` may name the
    holder's pid as ``{pid}`` (``?`` when the file holds none); when another
    app server holds the lock, ``busy`` is what :mod:`server.locks` says.
    """

    def __init__(self, settings: Settings, file_name: str, *, across: str, error: type[AirlockError],
                 busy: str, advice: str):
        self.path = settings.state_dir / file_name
        self.settings = settings
        self.across = across
        self.error = error
        self.busy = busy
        self.advice = advice  # what the refusal tells the operator to do
        self.fd: int | None = None
        self._across: AbstractContextManager | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
            os.close(self.fd)
            self.fd = None
            raise self.error(f"{self.busy.format(pid=holder or '?')}; {self.advice}") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        across = held_across_servers(self.settings, self.across)
        try:
            across.__enter__()
        except BaseException as exc:
            self._release()
            if isinstance(exc, LockBusyError):
                raise self.error(f"{exc}; {self.advice}") from None
            raise
        self._across = across
        return self

    def __exit__(self, *exc):
        try:
            if self._across is not None:
                self._across.__exit__(None, None, None)
                self._across = None
        finally:
            self._release()

    def _release(self) -> None:
        assert self.fd is not None, "release without __enter__"
        os.ftruncate(self.fd, 0)  # no stale pid left for the next refusal
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
