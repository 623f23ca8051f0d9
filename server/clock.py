"""The appliance's one clock: every service that stamps a record or compares
a time asks here, so there is one place to make time injectable and, later,
to guard it (a clock set back must not make expired metadata look fresh).

Stamps are UTC, ISO 8601 to the second (``2026-12-01T03:18:00+00:00``), the
form every table and export uses.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``moment`` as the appliance's stamp (UTC, to the second)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def now_iso() -> str:
    """Now, as the appliance's stamp."""
    return iso(utcnow())


def now_unix() -> int:
    """Now, in whole seconds since the epoch."""
    return int(time.time())


def iso_at(seconds: int) -> str:
    """A Unix time as the appliance's stamp."""
    return iso(datetime.fromtimestamp(seconds, UTC))


def iso_from_unix(seconds: int | None) -> str | None:
    """A Unix time as the appliance's stamp; None stays None."""
    if seconds is None:
        return None
    return iso(datetime.fromtimestamp(seconds, UTC))
