"""Maintenance windows: the devices of a group (a device tag) are offered an
update only while one of their group's windows is open.

A window is plant wall-clock time in an IANA zone ("line-3: Sundays
02:00-04:00, Europe/Berlin"): it opens on each of its days at ``start`` local
time and closes at ``end``; an ``end`` at or before ``start`` closes on the
next day (a window crossing midnight).  Being wall-clock time, a window on
the night the clocks go forward is an hour shorter (Europe/Berlin has no
02:00-03:00 on the last Sunday of March), and on the night they go back an
hour longer (02:00-03:00 happens twice): what "02:00-04:00" means to the
people at the plant.

A device in no group with a window may be offered an update at any time; a
device in several groups with windows, whenever any of them is open.  The
check-in's decision (``server.devices.releases.update_for``) asks
:func:`open_for_device`: one indexed read of the device's groups' windows.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server import audit
from server.clock import iso, utcnow
from server.devices.exceptions import InvalidRequestError, NotFoundError
from server.devices.writes import writing
from server.models import database

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
_ALIASES = {"daily": DAYS, "weekdays": DAYS[:5], "weekends": DAYS[5:]}
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
_TAG = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ZONE = re.compile(r"^[A-Za-z0-9_+-]{1,32}(/[A-Za-z0-9_+-]{1,32}){0,2}$")
MAX_WINDOWS_PER_GROUP = 32


@dataclass(frozen=True)
class Window:
    id: int
    group: str
    days: tuple[str, ...]
    start: str  # HH:MM local
    end: str  # HH:MM local; at or before start: the next day
    timezone: str
    created_at: str
    created_by: str

    def to_dict(self) -> dict:
        out = asdict(self)
        out["days"] = list(self.days)
        return out

    def describe(self) -> str:
        overnight = " (next day)" if _minute(self.end) <= _minute(self.start) else ""
        return f"{','.join(self.days)} {self.start}-{self.end}{overnight} {self.timezone}"


def _minute(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


_FULL = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, text: str) -> int:
    for i, (short, full) in enumerate(zip(DAYS, _FULL, strict=True)):
        if name in (short, full):
            return i
    raise InvalidRequestError(f"days {text[:80]!r}: name weekdays as mon,tue,...,sun, a range like mon-fri, or "
                              "daily, weekdays, weekends")


def parse_days(text: str) -> tuple[str, ...]:
    """``sun``, ``sat,sun``, ``mon-fri``, ``fri-mon``, ``daily``, ``weekdays``, ``weekends``."""
    chosen: set[str] = set()
    for part in text.lower().replace(" ", "").split(","):
        if part in _ALIASES:
            chosen.update(_ALIASES[part])
            continue
        first, sep, last = part.partition("-")
        i, end = _day(first, text), _day(last if sep else first, text)
        chosen.add(DAYS[i])
        while i != end:
            i = (i + 1) % 7
            chosen.add(DAYS[i])
    return tuple(d for d in DAYS if d in chosen)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    if not _ZONE.fullmatch(name):
        raise InvalidRequestError(f"time zone {name[:64]!r} is not an IANA zone name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequestError(f"time zone {name!r} is unknown: use an IANA name like Europe/Berlin "
                                  "(the tz database: Debian's tzdata package)") from None


def is_open(days: tuple[str, ...], start_minute: int, end_minute: int, tz: ZoneInfo, now: datetime) -> bool:
    """Whether a window is open at the instant ``now`` (aware)."""
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    if start_minute < end_minute:
        return today in days and start_minute <= minute < end_minute
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (today in days and minute >= start_minute) or (yesterday in days and minute < end_minute)


# the check-in's question ----------------------------------------------------------

_FOR_DEVICE = ("SELECT w.days, w.start_minute, w.end_minute, w.timezone FROM maintenance_window AS w "
               "WHERE w.group_tag IN (SELECT t.tag FROM device_tag AS t WHERE t.device = ?)")


def open_for_device(db, device_pk: int, now: datetime | None = None) -> bool:
    """May this device be offered an update now?  True when none of its
    groups has a window, or one of their windows is open."""
    rows = db.execute_sql(_FOR_DEVICE, (device_pk,)).fetchall()
    if not rows:
        return True
    now = now or utcnow()
    for days, start, end, tz in rows:
        try:
            if is_open(tuple(days.split(",")), start, end, zone(tz), now):
                return True
        except InvalidRequestError:  # a zone the tz database lost since: the window cannot open
            logger.warning("maintenance window with unknown time zone %r never opens", tz)
    return False


# managing windows ----------------------------------------------------------------

def _row(row) -> Window:
    wid, group, days, start, end, tz, created_at, created_by = row
    return Window(wid, group, tuple(days.split(",")), _hhmm(start), _hhmm(end), tz, created_at, created_by)


_COLUMNS = "id, group_tag, days, start_minute, end_minute, timezone, created_at, created_by"


def add_window(group: str, days: str, start: str, end: str, timezone: str, operator: str) -> Window:
    """Add a window to ``group``; audited."""
    if not _TAG.fullmatch(group):
        raise InvalidRequestError(f"group {group[:80]!r} is not a tag (letters, digits, '.', '_', '-')")
    chosen = parse_days(days)
    for name, value in (("start", start), ("end", end)):
        if not _TIME.fullmatch(value):
            raise InvalidRequestError(f"{name} time {value[:20]!r} is not HH:MM (00:00 to 23:59; end may be 24:00)")
    if start == "24:00":
        raise InvalidRequestError("a window cannot start at 24:00: use 00:00")
    start_minute, end_minute = _minute(start), _minute(end)
    if start_minute == end_minute:
        raise InvalidRequestError(f"start and end are both {start}: a window needs a length (00:00-24:00 for a "
                                  "whole day)")
    zone(timezone)
    with writing(database):
        (count,) = database.execute_sql("SELECT COUNT(*) FROM maintenance_window WHERE group_tag = ?",
                                        (group,)).fetchone()
        if count >= MAX_WINDOWS_PER_GROUP:
            raise InvalidRequestError(f"group {group} already has {count} windows, the most it may have: remove one")
        stamp = iso(utcnow())
        cursor = database.execute_sql(
            "INSERT INTO maintenance_window (group_tag, days, start_minute, end_minute, timezone, created_at, "
            "created_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (group, ",".join(chosen), start_minute, end_minute, timezone, stamp, operator))
        (wid,) = cursor.fetchone()
        window = Window(wid, group, chosen, start, end, timezone, stamp, operator)
        audit.record(operator, "window.add", f"window {wid}", {"group": group, "window": window.describe()})
    logger.info("maintenance window %s for group %s: %s (by %s)", wid, group, window.describe(), operator)
    return window


def list_windows(group: str | None = None) -> list[Window]:
    if group is not None:
        rows = database.execute_sql(f"SELECT {_COLUMNS} FROM maintenance_window WHERE group_tag = ? ORDER BY id",
                                    (group,)).fetchall()
    else:
        rows = database.execute_sql(f"SELECT {_COLUMNS} FROM maintenance_window ORDER BY group_tag, id").fetchall()
    return [_row(r) for r in rows]


def remove_window(window_id: int, operator: str) -> Window:
    """Remove a window; audited."""
    with writing(database):
        row = database.execute_sql(f"SELECT {_COLUMNS} FROM maintenance_window WHERE id = ?",
                                   (window_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no maintenance window {window_id}: see `airlock windows list`")
        window = _row(row)
        database.execute_sql("DELETE FROM maintenance_window WHERE id = ?", (window_id,))
        audit.record(operator, "window.remove", f"window {window_id}", {"group": window.group,
                                                                         "window": window.describe()})
    logger.info("maintenance window %s of group %s removed by %s", window_id, window.group, operator)
    return window


def window_open(window: Window, now: datetime | None = None) -> bool:
    """Whether ``window`` is open at ``now`` (default: the clock's now)."""
    return is_open(window.days, _minute(window.start), _minute(window.end), zone(window.timezone), now or utcnow())
