"""Recording and reading what mDNS discovery sees: one service for the mDNS
process (writes) and the CLI, API and console (reads).

Everything stored came off the network and is bounded and escaped here,
whoever the caller is.  Writes are short ``IMMEDIATE`` transactions, so the
mDNS process never holds SQLite's single writer lock for long while
gunicorn workers write check-ins.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from peewee import OperationalError

from server.clock import iso, utcnow
from server.discovery.models import DiscoveredServiceRow as Row
from server.discovery.txt import MAX_NAME_BYTES, decode_txt, escape_text
from server.models import database

logger = logging.getLogger(__name__)

APPLIANCE_TYPE = "_airlock._tcp.local."
DEVICE_TYPE = "_airlock-device._tcp.local."
MAX_ENTRIES = 10_000  # rows kept: a LAN flooding names cannot grow the database without limit
MAX_ADDRESSES = 16
MAX_DEVICE_ID = 128  # characters of a TXT id used to link to an enrolled device


@dataclass(frozen=True)
class SeenService:
    """One resolved mDNS service, as received: untrusted."""

    service_type: str  # e.g. "_airlock-device._tcp.local."
    name: str  # full instance name, e.g. "plc-7._airlock-device._tcp.local."
    host: str = ""
    addresses: tuple[str, ...] = ()
    port: int | None = None
    txt: bytes = b""  # raw TXT record data


@dataclass(frozen=True)
class DiscoveredService:
    service_type: str
    instance: str
    host: str
    addresses: list[str]
    port: int | None
    txt: dict[str, str | None]
    first_seen: str  # ISO 8601 UTC
    last_seen: str  # ISO 8601 UTC
    gone_since: str | None  # ISO 8601 UTC; None while it answers
    device_id: str | None = None  # TXT id, for an _airlock-device service
    enrolled: bool = False  # an enrolled device has that id
    state: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "state", "present" if self.gone_since is None else "gone")

    def to_dict(self) -> dict:
        return asdict(self)


def _iso(now: datetime | None) -> str:
    return iso(now or utcnow())


def instance_label(service_type: str, name: str) -> str:
    """The instance part of a full service name, escaped."""
    suffix = "." + service_type
    label = name[:-len(suffix)] if name.lower().endswith(suffix.lower()) else name
    return escape_text(label, MAX_NAME_BYTES)


def _key(service_type: str, name: str) -> tuple[str, str]:
    return escape_text(service_type, MAX_NAME_BYTES), instance_label(service_type, name)


def _addresses(addresses: Iterable[str]) -> list[str]:
    out = []
    for a in list(addresses)[:MAX_ADDRESSES]:
        try:
            out.append(str(ipaddress.ip_address(a)))
        except ValueError:
            continue
    return out


def record_seen(seen: SeenService, now: datetime | None = None) -> bool:
    """Create or refresh the entry for ``seen``; it is present again.

    Returns False when the entry is new and the table is full of services
    that still answer (the newcomer is dropped and logged)."""
    service_type, instance = _key(seen.service_type, seen.name)
    txt = decode_txt(seen.txt)
    device_id = None
    reported_id = txt.get("id")
    if seen.service_type.lower() == DEVICE_TYPE and reported_id:
        device_id = reported_id[:MAX_DEVICE_ID]
    values = {
        "host": escape_text(seen.host, MAX_NAME_BYTES),
        "addresses": json.dumps(_addresses(seen.addresses)),
        "port": seen.port if isinstance(seen.port, int) and 0 <= seen.port < 65536 else None,
        "txt": json.dumps(txt, ensure_ascii=False),
        "device_id": device_id,
        "last_seen": _iso(now),
        "gone_since": None,
    }
    with database.atomic("IMMEDIATE"):
        updated = (Row.update(**values)
                   .where((Row.service_type == service_type) & (Row.instance == instance)).execute())
        if updated:
            return True
        if Row.select().count() >= MAX_ENTRIES:
            oldest_gone = (Row.select(Row.id).where(Row.gone_since.is_null(False))
                           .order_by(Row.last_seen).limit(1).first())
            if oldest_gone is None:
                logger.warning("discovery table full (%d entries that answer): ignoring %s %s",
                               MAX_ENTRIES, service_type, instance)
                return False
            Row.delete().where(Row.id == oldest_gone.id).execute()
        Row.create(service_type=service_type, instance=instance, first_seen=values["last_seen"], **values)
    return True


def touch_seen(heard: Iterable[tuple[str, str]], now: datetime | None = None) -> int:
    """Mark known entries as heard from at ``now``, given (service type, full
    name) pairs; unknown ones are ignored.  Returns how many rows changed."""
    keys = {_key(t, n) for t, n in heard}
    if not keys:
        return 0
    changed = 0
    stamp = _iso(now)
    with database.atomic("IMMEDIATE"):
        for service_type, instance in keys:
            changed += (Row.update(last_seen=stamp, gone_since=None)
                        .where((Row.service_type == service_type) & (Row.instance == instance)).execute())
    return changed


def mark_gone(service_type: str, name: str, now: datetime | None = None) -> bool:
    """The service said goodbye (or its records expired): it is gone."""
    service_type, instance = _key(service_type, name)
    with database.atomic("IMMEDIATE"):
        return bool(Row.update(gone_since=_iso(now))
                    .where((Row.service_type == service_type) & (Row.instance == instance)
                           & Row.gone_since.is_null()).execute())


def sweep_gone(gone_after: float, now: datetime | None = None) -> int:
    """Mark gone every entry not heard from for ``gone_after`` seconds."""
    now = now or utcnow()
    cutoff = _iso(now - timedelta(seconds=gone_after))
    with database.atomic("IMMEDIATE"):
        return (Row.update(gone_since=_iso(now))
                .where(Row.gone_since.is_null() & (Row.last_seen < cutoff)).execute())


def _enrolled(device_ids: set[str]) -> set[str]:
    """Which of ``device_ids`` belong to enrolled devices (none while the
    device table does not exist)."""
    found: set[str] = set()
    ids = sorted(device_ids)
    for i in range(0, len(ids), 500):  # SQLite's limit on bound variables
        chunk = ids[i:i + 500]
        try:
            cursor = database.execute_sql(
                f"SELECT device_id FROM device WHERE device_id IN ({','.join('?' * len(chunk))})", chunk)
        except OperationalError:  # no device table (yet)
            return set()
        found.update(row[0] for row in cursor)
    return found


def list_discovered(service_type: str | None = None, present_only: bool = False) -> list[DiscoveredService]:
    """Everything discovered, by service type and instance; an
    ``_airlock-device`` entry is linked to the enrolled device with its id."""
    query = Row.select().order_by(Row.service_type, Row.instance)
    if service_type:
        full = service_type.rstrip(".").removesuffix(".local") + ".local."
        query = query.where(Row.service_type == full)
    if present_only:
        query = query.where(Row.gone_since.is_null())
    rows = list(query)
    enrolled = _enrolled({r.device_id for r in rows if r.device_id})
    return [DiscoveredService(
        service_type=r.service_type, instance=r.instance, host=r.host, addresses=json.loads(r.addresses),
        port=r.port, txt=json.loads(r.txt), first_seen=r.first_seen, last_seen=r.last_seen,
        gone_since=r.gone_since, device_id=r.device_id, enrolled=r.device_id in enrolled,
    ) for r in rows]
