"""A device's update history, through each step and across rollouts: when
the appliance first offered it each release (in which rollout and wave),
every step it reported, a health problem that followed an install, a halt
of the rollout it was in, and firmware it reported that no offer explains
("installed outside Airlock").

Read from the tables that record each fact once (``update_offer``,
``update_report``, ``firmware_event``, ``rollout``); nothing is copied.
"""

from __future__ import annotations

from server.clock import iso_from_unix
from server.devices.records import HistoryEntry
from server.models import database

MAX_ENTRIES = 200  # most recent entries shown per device
# within one second (times are kept to the second), steps come in this order
_ORDER = {e: i for i, e in enumerate(("offered", "downloading", "installing", "rebooted", "success", "failure",
                                      "unhealthy", "halted", "installed_outside"))}

_OFFERS = ("SELECT o.offered_at, o.version, o.release_id, o.rollout, o.wave, o.unhealthy, o.unhealthy_at, "
           "r.state, r.halted_at, r.halt_reason FROM update_offer AS o LEFT JOIN rollout AS r ON r.id = o.rollout "
           "WHERE o.device = ? ORDER BY o.id DESC LIMIT ?")
_REPORTS = ("SELECT u.received_at, r.version, u.release_id, u.step, u.reason FROM update_report AS u "
            "JOIN firmware_release AS r ON r.id = u.release_id WHERE u.device = ? ORDER BY u.id DESC LIMIT ?")
_OUTSIDE = "SELECT at, previous, version FROM firmware_event WHERE device = ? ORDER BY id DESC LIMIT ?"


def device_history(device_pk: int, limit: int = MAX_ENTRIES) -> list[HistoryEntry]:
    """The device's history, oldest first (at most ``limit`` entries, the latest)."""
    out: list[HistoryEntry] = []
    rollout_of: dict[int, tuple[int | None, int | None]] = {}
    for (offered_at, version, release_id, rollout, wave, unhealthy, unhealthy_at, state, halted_at,
         halt_reason) in database.execute_sql(_OFFERS, (device_pk, limit)).fetchall():
        rollout_of[release_id] = (rollout, wave)
        out.append(HistoryEntry(iso_from_unix(offered_at) or "", "offered", version, release_id, rollout, wave,
                                None))
        if unhealthy:
            out.append(HistoryEntry(iso_from_unix(unhealthy_at) or "", "unhealthy", version, release_id, rollout,
                                    wave, f"new health flags after the install: {unhealthy}"))
        if state == "halted" and halted_at:
            out.append(HistoryEntry(iso_from_unix(halted_at) or "", "halted", version, release_id, rollout, wave,
                                    halt_reason))
    for received_at, version, release_id, step, reason in database.execute_sql(_REPORTS,
                                                                               (device_pk, limit)).fetchall():
        rollout, wave = rollout_of.get(release_id, (None, None))
        out.append(HistoryEntry(received_at, step, version, release_id, rollout, wave, reason))
    for at, previous, version in database.execute_sql(_OUTSIDE, (device_pk, limit)).fetchall():
        out.append(HistoryEntry(iso_from_unix(at) or "", "installed_outside", version, None, None, None,
                                f"installed outside Airlock (was {previous})"))
    out.sort(key=lambda e: (e.at, _ORDER.get(e.event, len(_ORDER))))
    return out[-limit:]
