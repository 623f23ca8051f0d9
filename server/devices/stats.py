"""Counts for the console's charts, done in the database (the same cost at
50,000 devices as at 5): update outcomes per day.  Portable SQL only
(``SUBSTR`` on the ISO timestamps), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta

from peewee import fn

from server.clock import utcnow
from server.devices.models import UpdateReport
from server.models import tuples

OUTCOMES = ("success", "failure")


def update_outcomes(days: int = 14) -> list[tuple[str, int, int]]:
    """(day, successes, failures) for each of the last ``days`` UTC days,
    oldest first, days without a report included as zeros."""
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    day = fn.SUBSTR(UpdateReport.at, 1, 10)
    counts: dict[tuple[str, str], int] = {}
    query = (UpdateReport.select(day, UpdateReport.step, fn.COUNT(UpdateReport.id))
             .where((UpdateReport.step.in_(OUTCOMES)) & (UpdateReport.at >= first.isoformat()))
             .group_by(day, UpdateReport.step))
    for d, step, n in tuples(query):
        counts[(d, step)] = n
    out = []
    for i in range(days):
        d = (first + timedelta(days=i)).isoformat()
        out.append((d, counts.get((d, "success"), 0), counts.get((d, "failure"), 0)))
    return out
