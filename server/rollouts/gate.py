"""The rollouts' part of a check-in: may this device be offered a release
now, and what the appliance learns from the check-in for the health gates.

Everything here is bounded per check-in, whatever the fleet's size: at most
one indexed read of the release's latest rollout, one of the device's tags
(only for group waves), one of its own offer, and a write only when
something happened for the first time (the first offer of a release to the
device, the first health problem after its install).  The gates themselves
are evaluated in a periodic step (``server.rollouts.services.evaluate``),
never here: a check-in never scans a wave or the fleet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from server.devices.records import DeviceIdentity
from server.devices.writes import writing
from server.rollouts.waves import wave_of

# the latest rollout of a release decides for it; none: an ordinary release
_ROLLOUT = "SELECT id, state, waves, current_wave FROM rollout WHERE release_id = ? ORDER BY id DESC LIMIT 1"
_TAGS = "SELECT tag FROM device_tag WHERE device = ?"
_OFFERED = "SELECT 1 FROM update_offer WHERE device = ? AND release_id = ?"
_INSERT_OFFER = ("INSERT INTO update_offer (device, release_id, version, rollout, wave, offered_at, flags_before) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, release_id) DO NOTHING")
# the device's latest successful install of a rollout that is still watched
_WATCHED = ("SELECT o.id, o.flags_before FROM update_offer AS o JOIN rollout AS r ON r.id = o.rollout "
            "WHERE o.device = ? AND o.outcome = 'success' AND o.unhealthy IS NULL "
            "AND r.state IN ('running', 'paused') ORDER BY o.offered_at DESC LIMIT 1")
_MARK_UNHEALTHY = "UPDATE update_offer SET unhealthy = ?, unhealthy_at = ? WHERE id = ? AND unhealthy IS NULL"


@dataclass(frozen=True)
class Admission:
    """A rollout's answer for one device and release."""

    allowed: bool
    rollout: int | None = None  # None: the release has no rollout
    wave: int | None = None  # the device's wave, when a wave takes it


def admit(db, release_id: int, device: DeviceIdentity) -> Admission:
    """May ``device`` be offered ``release_id`` now, as far as rollouts go?

    running: if its wave has started; paused: only if it was offered the
    release before (it may be mid-install); halted or aborted: never;
    completed, or no rollout at all: yes.
    """
    row = db.execute_sql(_ROLLOUT, (release_id,)).fetchone()
    if row is None:
        return Admission(True)
    rid, state, waves_json, current = row
    if state in ("halted", "aborted"):
        return Admission(False, rid)
    waves = json.loads(waves_json)
    tags: set[str] = set()
    if any("group" in w for w in waves):
        tags = {t for (t,) in db.execute_sql(_TAGS, (device.pk,)).fetchall()}
    wave = wave_of(waves, rid, device.device_id, tags)
    if state == "completed":
        return Admission(True, rid, wave)
    if state == "paused":
        return Admission(db.execute_sql(_OFFERED, (device.pk, release_id)).fetchone() is not None, rid, wave)
    return Admission(wave is not None and wave <= current, rid, wave)


def note_offer(db, device: DeviceIdentity, release_id: int, version: str, admission: Admission,
               flags: list[str], now: int) -> None:
    """Remember the first time the device is offered the release (its
    history, the wave's counts, "installed outside Airlock" all read it)."""
    if db.execute_sql(_OFFERED, (device.pk, release_id)).fetchone():
        return
    with writing(db):
        db.execute_sql(_INSERT_OFFER, (device.pk, release_id, version, admission.rollout, admission.wave, now,
                                       json.dumps(sorted(flags))))


def note_health(db, device: DeviceIdentity, flags: list[str], now: int) -> None:
    """A check-in with health flags: if the device installed a release of a
    rollout that is still watched, and a flag is new since it was offered,
    its install counts as unhealthy (once; the wave's gate reads it)."""
    if not flags:
        return
    row = db.execute_sql(_WATCHED, (device.pk,)).fetchone()
    if row is None:
        return
    offer_id, before = row
    new = sorted(set(flags) - set(json.loads(before)))
    if not new:
        return
    with writing(db):
        db.execute_sql(_MARK_UNHEALTHY, (", ".join(new), now, offer_id))
