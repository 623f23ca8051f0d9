"""Opening, closing and listing alerts.

An alert is ``(kind, subject)``: at most one of each is open at a time (a
partial unique index), so opening one that is open changes nothing and a
condition that persists is one alert, however many check-ins report it.
Subjects name what the alert is about: ``device:<id>``,
``repository:<name>``, ``rollout:<id>``.  Every opening and closing is
logged as one line, the subject and detail escaped (``server.text``): they
may carry a device's text.  Nothing is sent anywhere: the plant's
monitoring scrapes ``/metrics`` (``airlock_alerts_open``) or reads the log.

On a check-in's path, :func:`on_checkin` costs one indexed read of that
device's open alerts and writes only when one opens or closes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from server.clock import iso, utcnow
from server.db import execute_prepared
from server.devices.exceptions import InvalidRequestError
from server.devices.writes import writing
from server.models import database
from server.text import escape_text

logger = logging.getLogger(__name__)

KINDS = {
    "device_offline": "an accepted device missed 3 check-in intervals",
    "reboot_loop": "a device rebooted more often than health_max_reboots_per_day in 24 hours",
    "errors_rising": "a device's error counters rose since its previous check-in",
    "update_failed": "a device reported a failed update",
    "metadata_expiring": "a served repository's metadata expires within alert_metadata_expiry_warning",
    "rollout_halted": "a rollout halted by itself (a failing wave)",
    "unverified_firmware": "a device reports firmware that no signed target of its repository names",
}
MAX_DETAIL = 500  # characters kept of an alert's detail
# the alerts a device's own check-ins open and close
_CHECKIN_KINDS = {"rebooting_often": "reboot_loop", "errors_rising": "errors_rising",
                  "unverified_firmware": "unverified_firmware"}


@dataclass(frozen=True)
class Alert:
    id: int
    kind: str
    subject: str
    detail: str
    opened_at: str
    closed_at: str | None
    close_reason: str | None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def to_dict(self) -> dict:
        return {**asdict(self), "open": self.open}


def device_subject(device_id: str) -> str:
    return f"device:{device_id}"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidRequestError(f"unknown alert kind {kind[:40]!r}: one of {', '.join(sorted(KINDS))}")


def open_in_transaction(kind: str, subject: str, detail: str, stamp: str) -> bool:
    """Open an alert inside the caller's write transaction; True when it opened."""
    cursor = database.execute_sql(
        "INSERT INTO alert (kind, subject, detail, opened_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (kind, subject) WHERE closed_at IS NULL DO NOTHING", (kind, subject, detail[:MAX_DETAIL], stamp))
    if cursor.rowcount:
        logger.warning("alert opened: kind=%s subject=%s detail=%s", kind, escape_text(subject),
                       escape_text(detail[:MAX_DETAIL]))
        return True
    return False


def close_in_transaction(kind: str, subject: str, reason: str, stamp: str) -> bool:
    """Close an alert inside the caller's write transaction; True when one closed."""
    cursor = database.execute_sql(
        "UPDATE alert SET closed_at = ?, close_reason = ? WHERE kind = ? AND subject = ? AND closed_at IS NULL",
        (stamp, reason[:MAX_DETAIL], kind, subject))
    if cursor.rowcount:
        logger.info("alert closed: kind=%s subject=%s reason=%s", kind, escape_text(subject), escape_text(reason))
        return True
    return False


def open_alert(kind: str, subject: str, detail: str = "") -> bool:
    """Open an alert unless one of this kind and subject is open; True when
    it opened.  For other services (a rollout that halts, say)."""
    _check_kind(kind)
    with writing(database):
        return open_in_transaction(kind, subject, detail, iso(utcnow()))


def close_alert(kind: str, subject: str, reason: str = "resolved") -> bool:
    """Close the open alert of this kind and subject, if any; True when one closed."""
    _check_kind(kind)
    with writing(database):
        return close_in_transaction(kind, subject, reason, iso(utcnow()))


_OPEN_KINDS = "SELECT kind FROM alert WHERE subject = {subject} AND closed_at IS NULL"


_OPEN_KINDS_OF = _OPEN_KINDS.format(subject="?")


def open_kinds_sql(subject: str) -> str:
    """The kinds of the open alerts of the SQL expression ``subject``, as one
    PostgreSQL array: on_checkin's read, for a statement that reads it along
    with its write (``server.devices.checkins``)."""
    return f"ARRAY({_OPEN_KINDS.format(subject=subject)})"


def on_checkin(db, device_id: str, flags: list[str], open_now: set[str] | None = None) -> None:
    """A device checked in with health ``flags``: close its offline alert,
    open or close its reboot-loop and rising-errors alerts.  One indexed
    read (none when ``open_now``, the kinds of its open alerts, was read
    with the check-in's write); a write only when something changes."""
    subject = device_subject(device_id)
    if open_now is None:
        open_now = {k for (k,) in execute_prepared(db, "airlock_open_alerts", _OPEN_KINDS_OF, (subject,)).fetchall()}
    wanted = {kind for flag, kind in _CHECKIN_KINDS.items() if flag in flags}
    to_open = wanted - open_now
    to_close = (open_now & ({"device_offline"} | set(_CHECKIN_KINDS.values()))) - wanted
    if not to_open and not to_close:
        return
    stamp = iso(utcnow())
    with writing(database):
        for kind in sorted(to_open):
            open_in_transaction(kind, subject, KINDS[kind], stamp)
        for kind in sorted(to_close):
            reason = "checked in again" if kind == "device_offline" else "no longer reported"
            close_in_transaction(kind, subject, reason, stamp)


def on_update_report(device_id: str, release_id: int, step: str, reason: str | None) -> None:
    """An update report: a failure opens ``update_failed``, a success closes it."""
    subject = device_subject(device_id)
    if step == "failure":
        open_alert("update_failed", subject, f"release {release_id}: {reason or 'no reason given'}")
    elif step == "success":
        close_alert("update_failed", subject, f"release {release_id} installed")


_COLUMNS = "id, kind, subject, detail, opened_at, closed_at, close_reason"


def list_alerts(*, include_closed: bool = False, kind: str | None = None, limit: int = 1000) -> list[Alert]:
    """Alerts, newest first: the open ones, or all."""
    if kind is not None:
        _check_kind(kind)
    where, params = [], []
    if not include_closed:
        where.append("closed_at IS NULL")
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = database.execute_sql(f"SELECT {_COLUMNS} FROM alert {clause}ORDER BY id DESC LIMIT ?",
                                (*params, limit)).fetchall()
    return [Alert(*r) for r in rows]


def counts() -> dict[str, tuple[int, int]]:
    """kind -> (open now, opened in all), for every kind."""
    out = dict.fromkeys(KINDS, (0, 0))
    for kind, still_open, total in database.execute_sql(
            "SELECT kind, SUM(CASE WHEN closed_at IS NULL THEN 1 ELSE 0 END), COUNT(*) FROM alert GROUP BY kind"):
        out[kind] = (int(still_open), int(total))
    return out
