"""``airlock timestamp refresh``: re-sign the timestamps the appliance may
(:mod:`server.freshness`), under the import lock so that no import
publishes meanwhile, and only with a clock it can trust
(:mod:`server.timekeeping`): a clock set back would sign a timestamp that
expires in the past, one set ahead a timestamp valid for years."""

from __future__ import annotations

from appliance.importer import ImportLock
from appliance.recovery import reconcile
from server import freshness, timekeeping
from server.freshness import RefreshOutcome
from server.settings import Settings
from server.timestamp_key import ensure_timestamp_key


def refresh_timestamps(settings: Settings, operator: str, *, force: bool = False) -> list[RefreshOutcome]:
    now = timekeeping.trusted_now(settings, "signing")
    ensure_timestamp_key(settings)  # a home from before the key existed gets it on first need
    with ImportLock(settings, "run `airlock timestamp refresh` again"):
        reconcile(settings)
        outcomes = freshness.refresh(settings, now, operator, force=force)
    signed = [o for o in outcomes if o.action == "re-signed"]
    # the timer makes this the appliance's heartbeat of time, too
    timekeeping.record("verified" if signed else "seen", now, "timestamp refresh")
    return outcomes
