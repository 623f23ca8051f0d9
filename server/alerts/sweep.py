"""The alerts no request reports: devices that went silent, and served
metadata about to expire.  A check-in cannot notice that another device
stopped checking in, and if the plant network is down no check-in comes at
all, so this runs on a timer, not on a request's path.

``airlock serve`` starts a :class:`Sweeper` thread in every gunicorn worker;
only the one holding ``HOME/run/alert-sweep.lock`` (an ``flock``, held for
the thread's life) sweeps, every ``alert_sweep_interval`` seconds, and the
others wait for the lock.  When that worker dies the kernel frees the lock
and another worker takes over.  `airlock alerts sweep` runs one sweep at
once (from a timer of its own, say, when nothing else runs).

A sweep: one scan of the accepted devices (``state`` is indexed) that are
silent and have no open ``device_offline`` alert, opening at most
``MAX_OPENS`` alerts per sweep (the rest in the next: a transaction stays
short even after a plant-wide outage); it closes the offline alerts of
devices that were decommissioned or rejected meanwhile, and of devices that
checked in since (a check-in closes its own, ``services.on_checkin``; this
catches one opened by a sweep racing that check-in); and it reads each
served repository's roles' expiry.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from tuf.api.metadata import Metadata

from server.alerts.services import close_in_transaction, device_subject, open_in_transaction
from server.clock import iso, utcnow
from server.devices.checkins import OFFLINE_AFTER_INTERVALS
from server.devices.writes import writing
from server.models import database
from server.repositories.store import RepositoryStore
from server.settings import Settings

logger = logging.getLogger(__name__)

MAX_OPENS = 1000  # offline alerts opened per sweep


@dataclass(frozen=True)
class SweepResult:
    opened: int
    closed: int


_SILENT = ("SELECT d.device_id, d.last_seen FROM device AS d WHERE d.state = 'accepted' AND d.last_seen < ? "
           "AND NOT EXISTS (SELECT 1 FROM alert AS a WHERE a.kind = 'device_offline' AND a.closed_at IS NULL "
           "AND a.subject = 'device:' || d.device_id) ORDER BY d.last_seen LIMIT ?")
_GONE = ("SELECT a.subject FROM alert AS a WHERE a.kind = 'device_offline' AND a.closed_at IS NULL AND NOT EXISTS "
         "(SELECT 1 FROM device AS d WHERE 'device:' || d.device_id = a.subject AND d.state = 'accepted')")
# Offline alerts of devices that checked in since: a check-in closes its own,
# but one opened by a sweep that read the device as silent just before the
# check-in stored, and committed just after it read its alerts, would stay
# open until the device's next check-in.
_BACK = ("SELECT a.subject FROM alert AS a WHERE a.kind = 'device_offline' AND a.closed_at IS NULL AND EXISTS "
         "(SELECT 1 FROM device AS d WHERE 'device:' || d.device_id = a.subject AND d.state = 'accepted' "
         "AND d.last_seen >= ?)")


def _expiring(settings: Settings, now: datetime) -> dict[str, str]:
    """repository -> what expires soon, for each served repository."""
    soon = now + timedelta(seconds=settings.alert_metadata_expiry_warning)
    out = {}
    for (name,) in database.execute_sql("SELECT name FROM repository ORDER BY name").fetchall():
        store = RepositoryStore(settings.public_dir, name)
        if not store.exists():
            continue
        state = store.trusted_state()
        roles = [("root", state.root), *state.roles.items()]
        expiries = sorted((Metadata.from_bytes(data).signed.expires, role) for role, data in roles)
        first, role = expiries[0]
        if first <= soon:
            verb = "expired" if first <= now else "expires"
            out[name] = f"{role} metadata {verb} at {iso(first)}: import a bundle with fresh metadata"
    return out


def sweep(settings: Settings, now: datetime | None = None) -> SweepResult:
    """One sweep; see the module's docstring."""
    now = now or utcnow()
    stamp = iso(now)
    cutoff = int(now.timestamp()) - OFFLINE_AFTER_INTERVALS * settings.checkin_interval
    silent = database.execute_sql(_SILENT, (cutoff, MAX_OPENS)).fetchall()
    gone = [s for (s,) in database.execute_sql(_GONE).fetchall()]
    back = [s for (s,) in database.execute_sql(_BACK, (cutoff,)).fetchall()]
    expiring = _expiring(settings, now)
    open_repos = {s for (s,) in database.execute_sql(
        "SELECT subject FROM alert WHERE kind = 'metadata_expiring' AND closed_at IS NULL").fetchall()}
    opened = closed = 0
    with writing(database):
        for device_id, last_seen in silent:
            opened += open_in_transaction("device_offline", device_subject(device_id),
                            f"last check-in {iso(datetime.fromtimestamp(last_seen, now.tzinfo))}", stamp)
        for subject in gone:
            closed += close_in_transaction("device_offline", subject, "no longer an accepted device", stamp)
        for subject in back:
            closed += close_in_transaction("device_offline", subject, "checked in again", stamp)
        for name, detail in expiring.items():
            opened += open_in_transaction("metadata_expiring", f"repository:{name}", detail, stamp)
        for subject in open_repos - {f"repository:{n}" for n in expiring}:
            closed += close_in_transaction("metadata_expiring", subject, "fresh metadata", stamp)
    return SweepResult(opened, closed)


class Sweeper:
    """The background sweeper of one `airlock serve` worker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="airlock-alert-sweep", daemon=True)

    def start(self) -> Sweeper:
        self.thread.start()
        return self

    def _lead(self) -> int | None:
        folder = self.settings.home / "run"
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(folder / "alert-sweep.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _run(self) -> None:
        interval = self.settings.alert_sweep_interval
        fd = None
        while not self.stop.is_set():
            if fd is None:
                fd = self._lead()
            if fd is not None:
                try:
                    with database.connection_context():
                        result = sweep(self.settings)
                    if result.opened or result.closed:
                        logger.info("alert sweep: %d opened, %d closed", result.opened, result.closed)
                except Exception:  # a sweep that fails must not end the worker's sweeping for good
                    logger.exception("alert sweep failed; trying again in %d s", interval)
            self.stop.wait(interval)
        if fd is not None:
            os.close(fd)
