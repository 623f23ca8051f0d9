"""Download caps per group (a device tag): at most ``max_downloads``
concurrent firmware downloads by the group's devices, sharing at most
``max_bytes_per_second``.  The appliance-wide caps are settings
(``download_max_concurrent``, ``download_max_bytes_per_second``);
``server.delivery.slots`` enforces both while targets are served.

A firmware download names no device (any TUF client fetches targets
without credentials), so its group is found from the client's address,
which every check-in records (``device.last_address``, indexed): one read
per download, never on a metadata poll or a check-in.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

from server import audit
from server.clock import iso, utcnow
from server.devices.exceptions import InvalidRequestError, NotFoundError
from server.devices.writes import writing
from server.models import database
from server.settings import Settings

logger = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_DOWNLOADS = 10_000
MIN_BYTES_PER_SECOND = 1024  # below this a firmware download would take days


@dataclass(frozen=True)
class Cap:
    """One scope's caps; 0 means no cap of that kind."""

    scope: str  # "appliance" or "group:<tag>"
    max_downloads: int
    max_bytes_per_second: int

    @property
    def per_download(self) -> int:
        """Bytes per second each download may take so that all of them
        together stay within ``max_bytes_per_second``; 0: unpaced."""
        if not self.max_bytes_per_second:
            return 0
        return max(1, self.max_bytes_per_second // max(1, self.max_downloads))


@dataclass(frozen=True)
class GroupCap:
    group: str
    max_downloads: int
    max_bytes_per_second: int  # 0: none
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict:
        return asdict(self)

    def cap(self) -> Cap:
        return Cap(f"group:{self.group}", self.max_downloads, self.max_bytes_per_second)


def check_caps(max_downloads: int, max_bytes_per_second: int, where: str) -> None:
    """Refuse caps that cannot work (shared by the settings and the groups)."""
    if not 0 <= max_downloads <= MAX_DOWNLOADS:
        raise InvalidRequestError(f"{where}: concurrent downloads must be 0 (no cap) to {MAX_DOWNLOADS}")
    if max_bytes_per_second < 0 or 0 < max_bytes_per_second < MIN_BYTES_PER_SECOND:
        raise InvalidRequestError(f"{where}: bandwidth must be 0 (no cap) or at least {MIN_BYTES_PER_SECOND} "
                                  "bytes per second")
    if max_bytes_per_second and not max_downloads:
        raise InvalidRequestError(f"{where}: a bandwidth cap is shared among a number of downloads: set the "
                                  "concurrent downloads cap too")


def appliance_cap(settings: Settings) -> Cap:
    return Cap("appliance", settings.download_max_concurrent, settings.download_max_bytes_per_second)


_COLUMNS = "group_tag, max_downloads, max_bytes_per_second, updated_at, updated_by"


def set_cap(group: str, max_downloads: int, max_bytes_per_second: int, operator: str) -> GroupCap:
    """Set (or change) ``group``'s caps; audited."""
    if not _TAG.fullmatch(group):
        raise InvalidRequestError(f"group {group[:80]!r} is not a tag (letters, digits, '.', '_', '-')")
    if max_downloads < 1:
        raise InvalidRequestError(f"group {group}: concurrent downloads must be at least 1 (remove the cap with "
                                  "`airlock download-caps clear GROUP`)")
    check_caps(max_downloads, max_bytes_per_second, f"group {group}")
    stamp = iso(utcnow())
    with writing(database):
        database.execute_sql(
            f"INSERT INTO download_cap ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_tag) DO UPDATE SET "
            "max_downloads = excluded.max_downloads, max_bytes_per_second = excluded.max_bytes_per_second, "
            "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            (group, max_downloads, max_bytes_per_second, stamp, operator))
        audit.record(operator, "download_cap.set", f"group {group}",
                     {"max_downloads": max_downloads, "max_bytes_per_second": max_bytes_per_second})
    logger.info("download cap for group %s: %d downloads, %s bytes/s (by %s)", group, max_downloads,
                max_bytes_per_second or "unlimited", operator)
    return GroupCap(group, max_downloads, max_bytes_per_second, stamp, operator)


def clear_cap(group: str, operator: str) -> GroupCap:
    """Remove ``group``'s caps; audited."""
    with writing(database):
        row = database.execute_sql(f"SELECT {_COLUMNS} FROM download_cap WHERE group_tag = ?", (group,)).fetchone()
        if row is None:
            raise NotFoundError(f"group {group[:80]!r} has no download cap: see `airlock download-caps list`")
        database.execute_sql("DELETE FROM download_cap WHERE group_tag = ?", (group,))
        audit.record(operator, "download_cap.clear", f"group {group}", {})
    logger.info("download cap for group %s removed by %s", group, operator)
    return GroupCap(*row)


def list_caps() -> list[GroupCap]:
    return [GroupCap(*r) for r in database.execute_sql(f"SELECT {_COLUMNS} FROM download_cap ORDER BY group_tag")]


def describe_caps(settings: Settings) -> dict:
    mine = appliance_cap(settings)
    return {"appliance": {"max_downloads": mine.max_downloads, "max_bytes_per_second": mine.max_bytes_per_second},
            "groups": [c.to_dict() for c in list_caps()]}


_FOR_ADDRESS = ("SELECT DISTINCT c.group_tag, c.max_downloads, c.max_bytes_per_second FROM device AS d "
                "JOIN device_tag AS t ON t.device = d.id JOIN download_cap AS c ON c.group_tag = t.tag "
                "WHERE d.last_address = ? AND d.state = 'accepted' ORDER BY c.group_tag")


def caps_for_address(db, address: str | None) -> list[Cap]:
    """The group caps that apply to a download from ``address``: those of
    every group of the accepted devices last seen there."""
    if not address:
        return []
    return [Cap(f"group:{tag}", n, bps) for tag, n, bps in db.execute_sql(_FOR_ADDRESS, (address,)).fetchall()]
