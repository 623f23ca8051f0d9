"""Firmware the appliance did not deliver.

A device whose firmware changes to a version that no signed target of the
pinned repositories names for its hardware model (installed from a service
laptop, say) is flagged ``unverified_firmware``, and keeps the flag while it
runs that version.  The firmware a device enrolled with is its baseline and
is not judged: vendors' bundles rarely carry the factory image, and
flagging every device that has not updated yet would drown the one that
was tampered with.  A device whose version changes to one the appliance
never offered it gets a history entry "installed outside Airlock"
(``firmware_event``), signed or not.

Bounded per check-in: the versions each repository's signed targets name,
per hardware model, are cached per process and rebuilt only when the
published metadata generation changes (one ``readlink`` per repository per
check-in, the list of repositories re-read at most every few seconds); the
"never offered" check runs only when the reported version changed, as one
indexed read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from server.clock import iso_from_unix
from server.devices.records import DeviceIdentity
from server.devices.releases import _roles
from server.devices.writes import writing
from server.models import database
from server.repositories.store import RepositoryStore
from server.settings import Settings
from server.text import escape_text
from signing.exceptions import AirlockError
from signing.verify import custom_of

logger = logging.getLogger(__name__)

FLAG = "unverified_firmware"
REPOSITORIES_TTL = 5.0  # seconds a worker trusts its list of pinned repositories

_OFFERED_VERSION = "SELECT 1 FROM update_offer WHERE device = ? AND version = ? LIMIT 1"
_INSERT_EVENT = ("INSERT INTO firmware_event (device, at, previous, version, kind) "
                 "VALUES (?, ?, ?, ?, 'installed_outside')")


class _VersionIndex:
    """Per process: hardware model -> versions named by signed targets."""

    def __init__(self):
        self._lock = threading.Lock()
        # keyed by the published tree: one appliance per process in service, several in tests
        self._names: dict[str, tuple[float, list[str]]] = {}
        self._repos: dict[tuple[str, str], tuple[tuple, dict[str, set[str]]]] = {}

    def _repositories(self, db, public_dir: Path) -> list[str]:
        stamp, names = self._names.get(str(public_dir), (0.0, []))
        if time.monotonic() - stamp > REPOSITORIES_TTL:
            names = [n for (n,) in db.execute_sql("SELECT name FROM repository").fetchall()]
            self._names[str(public_dir)] = (time.monotonic(), names)
        return names

    def _versions(self, public_dir: Path, name: str) -> dict[str, set[str]] | None:
        store = RepositoryStore(public_dir, name)
        try:
            # the generation's name alone could come back (a repository removed and added
            # again): the folder's identity and change time tell one generation from another
            st = os.stat(store.metadata_dir)
            generation = (os.readlink(store.metadata_dir), st.st_ino, st.st_ctime_ns)
        except OSError:
            return None
        key = (str(public_dir), name)
        with self._lock:
            cached = self._repos.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        by_model: dict[str, set[str]] = {}
        try:
            for signed in _roles(store).values():
                for target in signed.targets.values():
                    custom = custom_of(target)
                    version, models = custom.get("version"), custom.get("hardware")
                    if isinstance(version, str) and isinstance(models, list):
                        for model in models:
                            if isinstance(model, str):
                                by_model.setdefault(model, set()).add(version)
        except (AirlockError, OSError, ValueError) as exc:
            logger.warning("cannot read repository %s: %s", name, exc)
            return None
        with self._lock:
            self._repos[key] = (generation, by_model)
        return by_model

    def verdict(self, settings: Settings, db, hardware: str, version: str) -> bool | None:
        """True: a signed target names ``version`` for ``hardware``; False:
        targets exist for the model, none with that version; None: no
        repository has targets for the model (nothing to judge by)."""
        known = False
        for name in self._repositories(db, settings.public_dir):
            versions = (self._versions(settings.public_dir, name) or {}).get(hardware)
            if versions:
                known = True
                if version in versions:
                    return True
        return False if known else None


VERSIONS = _VersionIndex()


def unverified(settings: Settings, db, hardware: str, version: str) -> bool:
    return VERSIONS.verdict(settings, db, hardware, version) is False


def flagged(settings: Settings, db, device: DeviceIdentity, version: str) -> bool:
    """Should this check-in carry ``unverified_firmware``?  Judged when the
    version changes; kept while it does not (no lookup at all then)."""
    if version == device.firmware:
        return FLAG in device.health
    return unverified(settings, db, device.hardware, version)


def note_change(db, device: DeviceIdentity, version: str, now: int) -> None:
    """The device reports a version other than the one it ran: record it as
    installed outside Airlock unless the appliance ever offered it that
    version."""
    if db.execute_sql(_OFFERED_VERSION, (device.pk, version)).fetchone():
        return
    with writing(db):
        db.execute_sql(_INSERT_EVENT, (device.pk, now, device.firmware, version))
    logger.warning("device %s now runs %s (was %s), which the appliance never offered it: installed outside Airlock",
                   escape_text(device.device_id), escape_text(version), escape_text(device.firmware))


def unverified_devices(limit: int = 1000) -> list[dict]:
    """Accepted devices flagged ``unverified_firmware`` at their latest
    check-in (for alerts and the export): device id, model, version, when."""
    rows = database.execute_sql(
        "SELECT device_id, hardware, firmware, last_seen FROM device WHERE state = 'accepted' "
        "AND health LIKE ? ORDER BY device_id LIMIT ?", (f'%"{FLAG}"%', limit)).fetchall()
    return [{"device_id": d, "hardware": h, "firmware": f, "last_seen": iso_from_unix(s)} for d, h, f, s in rows]


def count_unverified() -> int:
    """How many accepted devices are flagged ``unverified_firmware``."""
    (n,) = database.execute_sql("SELECT COUNT(*) FROM device WHERE state = 'accepted' AND health LIKE ?",
                                (f'%"{FLAG}"%',)).fetchone()
    return int(n)
