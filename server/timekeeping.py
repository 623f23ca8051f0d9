"""Trusted time: may the appliance believe its clock?

Every TUF expiry check trusts the box's clock.  A clock set back makes
expired metadata look fresh (a freeze attack needs nothing else, and a dead
RTC battery does it by accident: the box boots in 1970); a clock set ahead
makes every valid file look expired.  So the appliance keeps a high-water
mark of time, persisted in ``time_mark`` (migration 0011), that only moves
forward:

- ``verified``: the clock when the appliance last verified signed metadata
  (an import) or signed some itself (``airlock timestamp refresh``), each
  time after the clock passed this check;
- ``seen``: the clock at ``airlock init``, when it passed this check;
- and a floor no real clock can be below: when this version of Airlock was
  released (:data:`RELEASE_FLOOR`), which catches 1970 on a fresh home.

TUF metadata carries no signing time (only ``expires``), so the mark is the
appliance's own clock at moments it already trusted it, never a time read
from a file.

Before an import, a signature or an enrollment, :func:`trusted_now` refuses
a clock earlier than the mark (beyond :data:`DRIFT`, so that the few minutes
an NTP correction or RTC drift moves it back are accepted) or more than
``clock_max_ahead_days`` after it, with a message that says what the clock
reads, what it should be at least, and how to set it.  :func:`clock_health`
says the same for ``/healthz``, ``airlock status``, ``/metrics`` and the
console, without refusing anything.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from server.clock import iso, utcnow
from server.db import connected
from server.models import database
from server.settings import Settings
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

# No clock that reads earlier than this is right: this version of Airlock did
# not exist yet.  Raised with each release.
RELEASE_FLOOR = datetime(2026, 11, 1, tzinfo=UTC)
# How far the clock may read behind the mark and still be believed: NTP
# corrections and RTC drift move a clock back by seconds or minutes; a freeze
# attack needs days (a timestamp lives a day or more).
DRIFT = timedelta(minutes=10)
MARKS = ("verified", "seen")
MAX_DETAIL = 200  # characters of a mark's "what set it"

HOW_TO_SET = ("set the clock as root (`timedatectl set-time 'YYYY-MM-DD HH:MM:SS'` in UTC, then `hwclock "
              "--systohc` so the RTC keeps it; or let chrony sync with the plant's NTP server: see "
              "docs/security-officer-guide.md)")


class ClockError(AirlockError):
    """The clock reads earlier than the appliance's high-water mark of time,
    or implausibly far ahead of it: expiry checks cannot be trusted."""

    status = 503
    code = "clock_untrusted"


@dataclass(frozen=True)
class TimeMark:
    at: datetime
    source: str  # what set it, for the messages


@dataclass(frozen=True)
class ClockHealth:
    """What the clock reads against the mark; ``problem`` is None when it
    can be trusted."""

    now: str  # ISO 8601, UTC
    mark: str  # ISO 8601, UTC: the clock should read at least this
    mark_source: str
    state: str  # ok | behind | ahead
    problem: str | None = None  # one line: what is wrong, what to do

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict:
        return asdict(self)


def high_water_mark() -> TimeMark:
    """The newest time the appliance has reason to trust: its persisted
    marks, and the release floor."""
    best = TimeMark(RELEASE_FLOOR, "the release of this Airlock version")
    with connected(database):
        rows = database.execute_sql("SELECT name, at, detail FROM time_mark").fetchall()
    for name, at, detail in rows:
        moment = datetime.fromtimestamp(int(at), UTC)
        if moment > best.at or (moment == best.at and name == "verified"):  # a tie: the more telling source
            what = "signed metadata verified or signed" if name == "verified" else "the clock seen"
            best = TimeMark(moment, f"{what} at {detail}" if detail else what)
    return best


def clock_health(settings: Settings, now: datetime | None = None) -> ClockHealth:
    """The clock against the mark, for reports: never raises for a bad clock."""
    now = now or utcnow()
    mark = high_water_mark()
    state, problem = _judge(settings, now, mark)
    return ClockHealth(iso(now), iso(mark.at), mark.source, state, problem)


def trusted_now(settings: Settings, action: str, now: datetime | None = None) -> datetime:
    """Now, if the clock can be trusted for ``action`` ("import", "signing",
    "enrollment"...); else :class:`ClockError`, saying what the clock reads,
    what it should read at least, and how to set it."""
    now = now or utcnow()
    mark = high_water_mark()
    _state, problem = _judge(settings, now, mark)
    if problem is not None:
        logger.warning("%s refused: %s", action, problem)
        raise ClockError(f"{action} refused: {problem}")
    return now


def record(name: str, now: datetime, detail: str) -> None:
    """Move the mark ``name`` forward to ``now`` (never back).  Call only
    with a reading that :func:`trusted_now` accepted."""
    if name not in MARKS:
        raise ValueError(f"unknown time mark {name!r}")
    with connected(database), database.atomic():
        # portable upsert (SQLite 3.24+, PostgreSQL 9.5+): the WHERE keeps the mark from moving back
        database.execute_sql(
            "INSERT INTO time_mark (name, at, detail) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET at = excluded.at, detail = excluded.detail WHERE time_mark.at < excluded.at",
            (name, int(now.timestamp()), str(detail)[:MAX_DETAIL]))


def _judge(settings: Settings, now: datetime, mark: TimeMark) -> tuple[str, str | None]:
    if now < mark.at - DRIFT:
        return "behind", (
            f"the clock reads {iso(now)}, earlier than {iso(mark.at)} ({mark.source}); a clock set back makes "
            f"expired metadata look fresh; {HOW_TO_SET}, to at least {iso(mark.at)}")
    ahead = now - mark.at
    if ahead > timedelta(days=settings.clock_max_ahead_days):
        return "ahead", (
            f"the clock reads {iso(now)}, {ahead.days} days after {iso(mark.at)} ({mark.source}), more than "
            f"clock_max_ahead_days ({settings.clock_max_ahead_days}); a clock set ahead makes valid metadata look "
            f"expired; {HOW_TO_SET}; if the clock is right (the appliance was off that long), raise "
            "clock_max_ahead_days in airlock.toml")
    return "ok", None
