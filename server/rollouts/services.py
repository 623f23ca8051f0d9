"""Staged rollouts: create, inspect, pause, resume, abort, advance, and the
periodic evaluation of the health gates that advances or halts them.

A rollout belongs to one release.  Its waves (``server.rollouts.waves``)
open one after the other: devices of waves 1..current are offered the
release (``server.rollouts.gate`` decides on each check-in), the others
are offered nothing from it.  The gate of the current wave reads what the
wave's devices did since it started (``update_offer``):

- succeeded: reported success, no new health flag since, still checking in;
- failed: reported failure;
- unhealthy: reported success, then a health flag it did not have before
  (a reboot loop, rising error counters, ... marked by the check-in), or
  silent (offered, then no check-in for 3 intervals).

The wave halts the rollout when, once ``min_sample`` devices finished, the
bad ones exceed ``100 - min_success`` percent of them; it opens the next
wave when its soak time has passed and ``min_success`` percent of the
devices that needed the release when it started succeeded.  After the last
wave the rollout is completed and the release goes to its whole scope.

Evaluation is a periodic step (every ``rollout_check_interval`` seconds,
started by a check-in in the background, one worker at a time; see
``scheduler``), not a check-in's work: one aggregate query per running
rollout over its current wave's offers (indexed by rollout and wave), plus
a count of the wave's devices once when the wave starts.  Check-ins stay
bounded whatever the fleet; the price is that a halt comes up to one
interval after the failures that cause it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

from server import audit
from server.alerts.services import close_in_transaction, open_in_transaction
from server.clock import iso, iso_at, iso_from_unix, now_unix, utcnow
from server.devices.checkins import OFFLINE_AFTER_INTERVALS
from server.devices.models import FirmwareRelease
from server.devices.records import ReleaseInfo
from server.devices.releases import approve, should_install
from server.devices.writes import writing
from server.models import database
from server.rollouts.exceptions import RolloutArgumentError, RolloutError, RolloutNotFoundError
from server.rollouts.records import GateVerdict, RolloutInfo, RolloutSpec, WaveInfo
from server.rollouts.waves import describe, parse_waves, wave_of
from server.settings import Settings

logger = logging.getLogger(__name__)

SYSTEM = "airlock"  # the actor of the steps the appliance takes by itself
STATES = ("running", "paused", "halted", "aborted", "completed")
MAX_SOAK = 90 * 86400  # seconds
MAX_REASON = 500  # characters

_COLUMNS = ("id, release_id, state, waves, current_wave, wave_started_at, soak, min_success, min_sample, "
            "halt_reason, halted_at, created_at, created_by, updated_at")
_WAVE_COUNTS = """
SELECT COUNT(*),
  COALESCE(SUM(CASE WHEN o.outcome = 'failure' AND o.outcome_at >= ? THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.outcome = 'success' AND o.unhealthy IS NOT NULL AND o.unhealthy_at >= ?
                THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN o.outcome = 'success' AND o.unhealthy IS NULL AND COALESCE(d.last_seen, 0) >= ?
                THEN 1 ELSE 0 END), 0),
  COALESCE(SUM(CASE WHEN (o.outcome IS NULL OR o.outcome = 'success') AND o.unhealthy IS NULL
                     AND COALESCE(d.last_seen, 0) < ? AND o.offered_at < ? THEN 1 ELSE 0 END), 0)
FROM update_offer AS o JOIN device AS d ON d.id = o.device
WHERE o.rollout = ? AND o.wave = ?
"""


def check_spec(spec: RolloutSpec) -> list[dict]:
    """The parsed waves of a valid spec; raises with what to fix."""
    waves = parse_waves(list(spec.waves))
    if not 0 <= spec.soak <= MAX_SOAK:
        raise RolloutArgumentError(f"soak {spec.soak} s: give 0 to {MAX_SOAK} seconds (up to 90 days)")
    if not 1 <= spec.min_success <= 100:
        raise RolloutArgumentError(f"min_success {spec.min_success}: give a percentage from 1 to 100")
    if not 1 <= spec.min_sample <= 100_000:
        raise RolloutArgumentError(f"min_sample {spec.min_sample}: give 1 to 100000 devices")
    return waves


# creating -------------------------------------------------------------------------------

def _insert(release_id: int, waves: list[dict], spec: RolloutSpec, operator: str, now: int) -> int:
    """The rollout row and its first wave, inside the caller's transaction."""
    live = database.execute_sql("SELECT id, state FROM rollout WHERE release_id = ? AND state IN "
                                "('running', 'paused', 'halted', 'completed') ORDER BY id DESC LIMIT 1",
                                (release_id,)).fetchone()
    if live is not None:
        raise RolloutError(f"release {release_id} already has rollout {live[0]} ({live[1]}): see "
                           f"`airlock rollouts show {live[0]}`; abort it first to start another")
    stamp = iso_from_unix(now)
    (rollout_id,) = database.execute_sql(
        "INSERT INTO rollout (release_id, state, waves, current_wave, wave_started_at, soak, min_success, min_sample, "
        "created_at, created_by, updated_at) VALUES (?, 'running', ?, 1, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (release_id, json.dumps(waves), now, spec.soak, spec.min_success, spec.min_sample, stamp, operator,
         stamp)).fetchone()
    audit.record(operator, "rollout.create", f"rollout {rollout_id}", {
        "release": release_id, "waves": [describe(w) for w in waves], "soak": spec.soak,
        "min_success": spec.min_success, "min_sample": spec.min_sample})
    return rollout_id


def create(settings: Settings, release_id: int, spec: RolloutSpec, operator: str) -> RolloutInfo:
    """Put an approved release under a rollout; wave 1 starts now."""
    waves = check_spec(spec)
    now = now_unix()
    with writing(database):
        release = FirmwareRelease.get_or_none(FirmwareRelease.id == release_id)
        if release is None:
            raise RolloutNotFoundError(f"no release {release_id}: see `airlock releases list`")
        if release.withdrawn_at is not None:
            raise RolloutError(f"release {release_id} was withdrawn on {release.withdrawn_at}: approve it again")
        rollout_id = _insert(release_id, waves, spec, operator, now)
    _start_wave(rollout_id, 1, now)
    logger.info("rollout %s of release %s created by %s: %s", rollout_id, release_id, operator,
                ", ".join(describe(w) for w in waves))
    return show(rollout_id)


def approve_with_rollout(settings: Settings, repository: str, target_path: str, operator: str, spec: RolloutSpec, *,
                         hardware: str | None = None, group: str | None = None,
                         allow_downgrade: bool = False) -> tuple[ReleaseInfo, RolloutInfo]:
    """Approve a release and put it under a rollout in one transaction: no
    check-in can see the release without its rollout."""
    waves = check_spec(spec)
    now = now_unix()
    created: list[int] = []
    release = approve(settings, repository, target_path, operator, hardware=hardware, group=group,
                      allow_downgrade=allow_downgrade,
                      on_approved=lambda rid: created.append(_insert(rid, waves, spec, operator, now)))
    _start_wave(created[0], 1, now)
    return release, show(created[0])


# reading --------------------------------------------------------------------------------

def _row(rollout_id: int) -> tuple:
    row = database.execute_sql(f"SELECT {_COLUMNS} FROM rollout WHERE id = ?", (rollout_id,)).fetchone()
    if row is None:
        raise RolloutNotFoundError(f"no rollout {rollout_id}: see `airlock rollouts list`")
    return row


def _wave_counts(rollout_id: int, wave: int, started: int, settings_interval: int, now: int) -> tuple[int, ...]:
    """(offered, failed, unhealthy, succeeded, silent) of a wave since it started."""
    silent_before = now - OFFLINE_AFTER_INTERVALS * settings_interval
    row = database.execute_sql(_WAVE_COUNTS, (started, started, silent_before, silent_before, silent_before,
                                              rollout_id, wave)).fetchone()
    return tuple(int(v) for v in row)


def _info(row: tuple, *, checkin_interval: int = 300, now: int | None = None) -> RolloutInfo:
    (rid, release_id, state, waves_json, current, wave_started, soak, min_success, min_sample, halt_reason, halted_at,
     created_at, created_by, updated_at) = row
    release = FirmwareRelease.get_by_id(release_id)
    waves = json.loads(waves_json)
    started = {w: (size, s, f) for w, size, s, f in database.execute_sql(
        "SELECT wave, size, started_at, finished_at FROM rollout_wave WHERE rollout = ?", (rid,)).fetchall()}
    now = now if now is not None else now_unix()
    info = RolloutInfo(rid, release_id, release.repository, release.target_path, release.version, state, current,
                       soak, min_success, min_sample, halt_reason, iso_from_unix(halted_at), created_at, created_by,
                       updated_at)
    for number, wave in enumerate(waves, 1):
        size, s, f = started.get(number, (None, None, None))
        w = WaveInfo(number, describe(wave), size, iso_from_unix(s), iso_from_unix(f))
        if s is not None:
            since = wave_started if number == current else s
            offered, failed, unhealthy, succeeded, silent = _wave_counts(rid, number, since, checkin_interval, now)
            w.offered, w.failed, w.unhealthy, w.succeeded = offered, failed, unhealthy + silent, succeeded
        info.waves.append(w)
    return info


def show(rollout_id: int, settings: Settings | None = None) -> RolloutInfo:
    return _info(_row(rollout_id), checkin_interval=settings.checkin_interval if settings else 300)


def list_rollouts(state: str | None = None, settings: Settings | None = None) -> list[RolloutInfo]:
    if state is not None and state not in STATES:
        raise RolloutArgumentError(f"state {state!r} is not one of {', '.join(STATES)}")
    query = f"SELECT {_COLUMNS} FROM rollout" + (" WHERE state = ?" if state else "") + " ORDER BY id DESC"
    interval = settings.checkin_interval if settings else 300
    return [_info(r, checkin_interval=interval) for r in database.execute_sql(query, (state,) if state else ())]


def halted_rollouts() -> list[RolloutInfo]:
    """Rollouts that halted by themselves and wait for a person (alerts, status, export)."""
    return list_rollouts("halted")


def counts() -> dict[str, int]:
    """Rollouts per state, every state named (status and /metrics)."""
    found = dict(database.execute_sql("SELECT state, COUNT(*) FROM rollout GROUP BY state").fetchall())
    return {s: int(found.get(s, 0)) for s in STATES}


# the operator's steps ----------------------------------------------------------------------

@contextmanager
def _changing(rollout_id: int) -> Iterator[tuple]:
    with writing(database):
        yield _row(rollout_id)


def _set(rollout_id: int, **values) -> None:
    values["updated_at"] = iso(utcnow())
    names = ", ".join(f"{k} = ?" for k in values)
    database.execute_sql(f"UPDATE rollout SET {names} WHERE id = ?", (*values.values(), rollout_id))


def pause(rollout_id: int, operator: str) -> RolloutInfo:
    """Stop offering the release to devices that were not offered it yet."""
    with _changing(rollout_id) as row:
        if row[2] != "running":
            raise RolloutError(f"rollout {rollout_id} is {row[2]}: only a running rollout can be paused")
        _set(rollout_id, state="paused")
        audit.record(operator, "rollout.pause", f"rollout {rollout_id}", {"wave": row[4]})
    return show(rollout_id)


def alert_subject(rollout_id: int) -> str:
    """The subject of a rollout's ``rollout_halted`` alert (server.alerts)."""
    return f"rollout:{rollout_id}"


def resume(rollout_id: int, operator: str) -> RolloutInfo:
    """Run a paused or halted rollout again.  After a halt, the current wave's
    gate starts counting afresh from now (the failures that halted it stay in
    the devices' history and the audit log)."""
    now = now_unix()
    with _changing(rollout_id) as row:
        state = row[2]
        if state not in ("paused", "halted"):
            raise RolloutError(f"rollout {rollout_id} is {state}: only a paused or halted rollout can be resumed")
        if state == "halted":
            # counting starts after this second: what was reported in it belongs to the halt
            _set(rollout_id, state="running", wave_started_at=now + 1)
            close_in_transaction("rollout_halted", alert_subject(rollout_id), f"resumed by {operator}",
                                 iso_at(now))
        else:
            _set(rollout_id, state="running")
        audit.record(operator, "rollout.resume", f"rollout {rollout_id}", {"wave": row[4], "was": state,
                                                                            "halt_reason": row[9]})
    return show(rollout_id)


def abort(rollout_id: int, operator: str, reason: str = "") -> RolloutInfo:
    """End the rollout for good: devices not offered the release yet never are."""
    reason = reason.strip()[:MAX_REASON]
    with _changing(rollout_id) as row:
        if row[2] in ("aborted", "completed"):
            raise RolloutError(f"rollout {rollout_id} is already {row[2]}")
        _set(rollout_id, state="aborted", halt_reason=reason or row[9] or f"aborted by {operator}")
        close_in_transaction("rollout_halted", alert_subject(rollout_id), f"aborted by {operator}",
                             iso_at(now_unix()))
        audit.record(operator, "rollout.abort", f"rollout {rollout_id}", {"wave": row[4], "reason": reason})
    logger.warning("rollout %s aborted by %s", rollout_id, operator)
    return show(rollout_id)


def advance(rollout_id: int, operator: str) -> RolloutInfo:
    """Open the next wave now, whatever the gate says (or complete the
    rollout after its last wave)."""
    with _changing(rollout_id) as row:
        if row[2] not in ("running", "paused"):
            raise RolloutError(f"rollout {rollout_id} is {row[2]}: only a running or paused rollout can advance"
                               + ("; resume it first" if row[2] == "halted" else ""))
        verdict = _step_forward(row, operator, "advanced by an operator", now_unix())
    if verdict.action == "advance":
        _start_wave(rollout_id, row[4] + 1, now_unix())
    return show(rollout_id)


# the gates -----------------------------------------------------------------------------

def _step_forward(row: tuple, actor: str, why: str, now: int) -> GateVerdict:
    """Open the next wave or complete the rollout (inside a transaction)."""
    rid, current, waves = row[0], row[4], json.loads(row[3])
    database.execute_sql("UPDATE rollout_wave SET finished_at = ? WHERE rollout = ? AND wave = ?", (now, rid, current))
    if current >= len(waves):
        _set(rid, state="completed")
        audit.record(actor, "rollout.complete", f"rollout {rid}", {"wave": current, "why": why})
        logger.info("rollout %s completed (%s)", rid, why)
        return GateVerdict(rid, "complete", why)
    _set(rid, state="running" if row[2] == "running" else row[2], current_wave=current + 1, wave_started_at=now)
    audit.record(actor, "rollout.advance", f"rollout {rid}", {"wave": current + 1, "why": why})
    logger.info("rollout %s: wave %s starts (%s)", rid, current + 1, why)
    return GateVerdict(rid, "advance", why)


def _start_wave(rollout_id: int, wave: int, now: int) -> None:
    """Record the wave's start and how many devices need the release in it
    (one pass over the release's scope, once per wave, never per check-in)."""
    rid, release_id, _state, waves_json = _row(rollout_id)[:4]
    release = FirmwareRelease.get_by_id(release_id)
    waves = json.loads(waves_json)
    models = set(json.loads(release.target_hardware))
    if release.hardware is not None:
        scope = database.execute_sql("SELECT id, device_id, hardware, firmware FROM device WHERE state = 'accepted' "
                                     "AND hardware = ?", (release.hardware,)).fetchall()
    else:
        scope = database.execute_sql("SELECT d.id, d.device_id, d.hardware, d.firmware FROM device AS d JOIN "
                                     "device_tag AS t ON t.device = d.id WHERE d.state = 'accepted' AND t.tag = ?",
                                     (release.group_tag,)).fetchall()
    tags: dict[int, set[str]] = {}
    groups = [w["group"] for w in waves if "group" in w]
    if groups:
        marks = ", ".join("?" * len(groups))
        for device, tag in database.execute_sql(f"SELECT device, tag FROM device_tag WHERE tag IN ({marks})", groups):
            tags.setdefault(device, set()).add(tag)
    size = sum(1 for pk, device_id, hardware, firmware in scope
               if hardware in models and should_install(firmware, release.version, bool(release.allow_downgrade))
               and wave_of(waves, rid, device_id, tags.get(pk, set())) == wave)
    with writing(database):
        database.execute_sql("INSERT INTO rollout_wave (rollout, wave, size, started_at) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (rollout, wave) DO NOTHING", (rid, wave, size, now))


def judge(row: tuple, size: int, counts: tuple[int, ...], now: int) -> GateVerdict:
    """The gate's verdict on the current wave from its counts; pure."""
    rid, wave_started, soak, min_success, min_sample = row[0], row[5], row[6], row[7], row[8]
    _offered, failed, unhealthy, succeeded, silent = counts
    bad = failed + unhealthy + silent
    finished = succeeded + bad
    if finished and finished >= min(min_sample, max(size, 1)) and bad * 100 > (100 - min_success) * finished:
        parts = [f"{n} {what}" for n, what in ((failed, "failed"), (unhealthy, "unhealthy after install"),
                                                (silent, "silent")) if n]
        return GateVerdict(rid, "halt", f"wave {row[4]}: {', '.join(parts)} of {finished} finished "
                                        f"({bad * 100 / finished:.0f}% bad; at most {100 - min_success}% allowed)")
    if now < wave_started + soak:
        return GateVerdict(rid, "wait", f"wave {row[4]} soaks until {iso_from_unix(wave_started + soak)}")
    needed = math.ceil(min_success * size / 100)
    if succeeded < needed:
        return GateVerdict(rid, "wait", f"wave {row[4]}: {succeeded} of {size} succeeded, {needed} needed")
    return GateVerdict(rid, "advance", f"wave {row[4]}: {succeeded} of {size} succeeded and soaked {soak} s")


def evaluate(settings: Settings, now: int | None = None) -> list[GateVerdict]:
    """Evaluate every running rollout's current wave; halt or advance it."""
    now = now if now is not None else now_unix()
    verdicts = []
    for row in database.execute_sql(f"SELECT {_COLUMNS} FROM rollout WHERE state = 'running' ORDER BY id").fetchall():
        rid, current = row[0], row[4]
        sized = database.execute_sql("SELECT size FROM rollout_wave WHERE rollout = ? AND wave = ?",
                                     (rid, current)).fetchone()
        if sized is None:
            _start_wave(rid, current, now)
            sized = database.execute_sql("SELECT size FROM rollout_wave WHERE rollout = ? AND wave = ?",
                                         (rid, current)).fetchone()
        verdict = judge(row, int(sized[0] or 0), _wave_counts(rid, current, row[5], settings.checkin_interval, now),
                        now)
        if verdict.action == "wait":
            verdicts.append(verdict)
            continue
        with writing(database):
            fresh = database.execute_sql(f"SELECT {_COLUMNS} FROM rollout WHERE id = ?", (rid,)).fetchone()
            if fresh is None or fresh[2] != "running" or fresh[4] != current:
                continue  # an operator (or another worker) changed it meanwhile
            if verdict.action == "halt":
                _set(rid, state="halted", halt_reason=verdict.reason, halted_at=now)
                audit.record(SYSTEM, "rollout.halt", f"rollout {rid}", {"wave": current, "reason": verdict.reason})
                open_in_transaction("rollout_halted", alert_subject(rid), verdict.reason, iso_at(now))
                logger.warning("rollout %s halted: %s", rid, verdict.reason)
            else:
                verdict = _step_forward(fresh, SYSTEM, verdict.reason, now)
        if verdict.action == "advance":
            _start_wave(rid, current + 1, now)
        verdicts.append(verdict)
    return verdicts


def claim(settings: Settings, now: int) -> bool:
    """Take the turn to evaluate the gates if it is due; one worker wins."""
    with writing(database):
        return database.execute_sql("UPDATE rollout_check SET claimed_at = ? WHERE id = 1 AND claimed_at <= ?",
                                    (now, now - settings.rollout_check_interval)).rowcount == 1
