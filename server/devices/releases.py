"""Releases: IT approves a target of a pinned repository for a hardware model
or a group of devices (a tag); check-ins learn what to install.

A target can be approved only if the repository's current verified metadata
lists it (found as a TUF client finds it: pre-order depth-first through the
delegations), with custom metadata ``{"hardware": [...], "version": "X.Y.Z"}``.

Which release applies to a device: among active releases for one of its
tags or for its hardware model, those whose target lists the device's
hardware, group releases first, newest approval first; the first one is the
device's release.  The device is told to install it when its firmware
differs, and never a version older than it runs unless the release is
marked as a permitted downgrade.

A device may report update steps only on a release that is for it (its
model, its groups); see ``_check_offered`` for a withdrawn one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from peewee import SqliteDatabase
from tuf.api.metadata import Metadata, Targets

from server import audit
from server.alerts.services import on_update_report
from server.clock import iso, now_unix, utcnow
from server.db import execute_prepared
from server.delivery.windows import open_for_device
from server.devices.exceptions import (
    InvalidRequestError,
    InvalidTokenError,
    NotFoundError,
    ReleaseError,
    ReleaseNotOfferedError,
    UnknownReleaseError,
)
from server.devices.models import FirmwareRelease
from server.devices.openapi import HARDWARE, TAG, VERSION
from server.devices.records import DeviceIdentity, ReleaseInfo, UpdateOffer, UpdateReportIn
from server.devices.writes import writing
from server.models import database, tuples
from server.repositories.models import Repository
from server.repositories.store import RepositoryStore
from server.rollouts import gate
from server.settings import Settings
from server.text import escape_text
from signing.exceptions import AirlockError
from signing.lookup import client_lookup, refresh_problem, resolve_targets
from signing.verify import custom_of

logger = logging.getLogger(__name__)

_VERSION = re.compile(VERSION.strip("^$"))
_HARDWARE = re.compile(HARDWARE.strip("^$"))
_TAG = re.compile(TAG.strip("^$"))


def version_key(version: str) -> tuple:
    """Order versions numerically: X.Y.Z, a pre-release (``-rc1``) before
    its release; build metadata (``+...``) is ignored."""
    m = _VERSION.fullmatch(version)
    if not m:
        raise InvalidRequestError(f"version {version!r} is not X.Y.Z")
    core, _, _build = version.partition("+")
    numbers, _, pre = core.partition("-")
    x, y, z = (int(n) for n in numbers.split("."))
    return (x, y, z, 0 if pre else 1, pre)


def should_install(device_version: str, release_version: str, allow_downgrade: bool) -> bool:
    if device_version == release_version:
        return False
    try:
        ours, theirs = version_key(device_version), version_key(release_version)
    except InvalidRequestError:
        return False
    if theirs > ours:
        return True
    return theirs < ours and allow_downgrade


# the repository's verified targets --------------------------------------------------

@dataclass(frozen=True)
class TargetInfo:
    path: str
    length: int
    sha256: str | None
    custom: dict
    role: str


def _roles(store: RepositoryStore) -> dict[str, Targets]:
    state = store.trusted_state()
    return {name: Metadata[Targets].from_bytes(data).signed for name, data in state.roles.items()
            if name not in ("root", "timestamp", "snapshot")}


def find_target(roles: dict[str, Targets], path: str, now: datetime | None = None) -> TargetInfo | None:
    """Resolve ``path`` as a TUF client does (:func:`signing.lookup.client_lookup`):
    None when it finds nothing or its lookup fails (a role on the way that
    the snapshot does not list, or that expired before ``now``)."""
    found = client_lookup(path, roles, now=now)
    if found.target is None or found.role is None:
        return None
    tf = found.target
    return TargetInfo(path, tf.length, tf.hashes.get("sha256"), custom_of(tf), found.role)


def _not_offerable(repository: str, path: str, roles: dict[str, Targets], now: datetime) -> str:
    """Why a client cannot fetch ``path``: what approval says."""
    found = client_lookup(path, roles, now=now)
    if found.blocked_by is not None:
        return (f"{path!r} cannot be released: a device's lookup of it stops at role {found.blocked_by!r} of "
                f"{repository}, which {found.why}; import a bundle with newer metadata for that role first")
    listed = [s for s in resolve_targets(roles, now=now) if s.path == path]
    if listed:
        return (f"{path!r} cannot be released: {repository}'s role {listed[0].role!r} lists it, but no device "
                f"finds it there ({listed[0].why}); see `airlock repo show {repository}`")
    return (f"{path!r} is not a target of {repository}'s current metadata: see `airlock repo show {repository}` "
            "and import a bundle that has it")


class _TargetIndex:
    """Per-process cache: does a repository still list a target?  Rebuilt when
    the published metadata generation changes (one ``readlink`` per check)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[str, dict[str, Targets]]] = {}

    def find(self, public_dir: Path, repository: str, path: str) -> TargetInfo | None:
        store = RepositoryStore(public_dir, repository)
        try:
            generation = os.readlink(store.metadata_dir)
        except OSError:
            return None
        key = (str(public_dir), repository)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None or cached[0] != generation:
            try:
                cached = (generation, _roles(store))
            except (AirlockError, OSError, ValueError) as exc:
                logger.warning("cannot read repository %s: %s", repository, exc)
                return None
            with self._lock:
                self._cache[key] = cached
        return find_target(cached[1], path, utcnow())


TARGETS = _TargetIndex()


# approving ---------------------------------------------------------------------------

def approve(settings: Settings, repository: str, target_path: str, operator: str, *, hardware: str | None = None,
            group: str | None = None, allow_downgrade: bool = False,
            on_approved: Callable[[int], object] | None = None) -> ReleaseInfo:
    """Approve a target for a model or a group.  ``on_approved`` runs with the
    new release's id inside the same transaction (a rollout is created there,
    so that no check-in sees the release without it)."""
    if (hardware is None) == (group is None):
        raise ReleaseError("give exactly one of --hardware MODEL or --group TAG")
    if hardware is not None and not _HARDWARE.fullmatch(hardware):
        raise InvalidRequestError(f"hardware {hardware!r} is not a model name")
    if group is not None and not _TAG.fullmatch(group):
        raise InvalidRequestError(f"group {group!r} is not a tag (letters, digits, '.', '_', '-')")
    if Repository.get_or_none(Repository.name == repository) is None:
        raise NotFoundError(f"no repository named {repository!r} is pinned: see `airlock repo list`")
    store = RepositoryStore(settings.public_dir, repository)
    now = utcnow()
    roles = _roles(store) if store.exists() else {}
    stale = refresh_problem(store.trusted_state(), now) if roles else None
    if stale is not None:
        raise ReleaseError(f"{target_path!r} cannot be released: devices cannot refresh {repository} ({stale}); "
                           "import a bundle with newer metadata first")
    target = find_target(roles, target_path, now)
    if target is None:
        raise ReleaseError(_not_offerable(repository, target_path, roles, now))
    custom = target.custom
    models, version = custom.get("hardware"), custom.get("version")
    if (not isinstance(models, list) or not all(isinstance(m, str) for m in models)
            or not isinstance(version, str) or not _VERSION.fullmatch(version)):
        raise ReleaseError(f"{target_path!r} lacks custom metadata {{\"hardware\": [...], \"version\": \"X.Y.Z\"}}: "
                           "the vendor must add it; it cannot be released")
    if hardware is not None and hardware not in models:
        raise ReleaseError(f"{target_path!r} is for {', '.join(models) or 'no hardware'}, not {hardware}")
    with writing(database):
        scope = (FirmwareRelease.hardware == hardware) if hardware else (FirmwareRelease.group_tag == group)
        same = FirmwareRelease.get_or_none(
            scope & (FirmwareRelease.repository == repository) & (FirmwareRelease.target_path == target_path)
            & FirmwareRelease.withdrawn_at.is_null() & (FirmwareRelease.allow_downgrade == allow_downgrade))
        if same is not None:
            raise ReleaseError(f"this is already release {same.id}; withdraw it first to approve it again")
        row = FirmwareRelease.create(
            repository=repository, target_path=target_path, version=version, target_hardware=json.dumps(models),
            length=target.length, sha256=target.sha256, hardware=hardware, group_tag=group,
            allow_downgrade=allow_downgrade, approved_at=iso(utcnow()), approved_by=operator)
        audit.record(operator, "release.approve", f"release {row.id}", {
            "repository": repository, "target": target_path, "version": version, "hardware": hardware, "group": group})
        if on_approved is not None:
            on_approved(row.id)
    logger.info("release %s: %s %s (%s) for %s approved by %s", row.id, repository, target_path, version,
                hardware or f"group {group}", operator)
    shadowed = _shadowed_by()
    info = _info(row, shadowed)
    info.shadows = sorted((old for old, new in shadowed.items() if new == row.id), reverse=True)
    for old in info.shadows:
        logger.warning("release %s shadows release %s: check-ins offer only %s to the devices both are for",
                       row.id, old, row.id)
    return info


def _shadowed_by() -> dict[int, int]:
    """Active releases that no check-in can offer, each with the newer active
    release that wins instead.

    A check-in takes the newest active release of a scope (a hardware model,
    or a group) whose target lists the device's model, and stops there, even
    when that release is older than what the device runs.  So a release is
    shadowed when newer active releases of its scope cover every model it
    could reach: approving fw-2.4.1 for plc-x after fw-2.5.0 leaves 2.5.0
    offered to nobody, and a device on 2.4.1 is offered nothing.
    """
    scopes: dict[tuple[str, str], list[tuple[int, set[str]]]] = {}
    for rid, hardware, group, models in tuples(FirmwareRelease.select(FirmwareRelease.id, FirmwareRelease.hardware,
                                                                       FirmwareRelease.group_tag,
                                                                       FirmwareRelease.target_hardware)
                                               .where(FirmwareRelease.withdrawn_at.is_null())
                                               .order_by(FirmwareRelease.id.desc())):
        reach = {hardware} if hardware else set(json.loads(models))
        scopes.setdefault(("hardware", hardware) if hardware else ("group", group), []).append((rid, reach))
    shadowed: dict[int, int] = {}
    for newest_first in scopes.values():
        for i, (rid, reach) in enumerate(newest_first):
            newer = newest_first[:i]
            covered = set().union(*(r for _, r in newer)) if newer else set()
            if reach and reach <= covered:
                shadowed[rid] = next(n for n, r in newer if r & reach)  # the one check-ins take
    return shadowed


def list_releases(include_withdrawn: bool = False) -> list[ReleaseInfo]:
    query = FirmwareRelease.select().order_by(FirmwareRelease.id.desc())
    if not include_withdrawn:
        query = query.where(FirmwareRelease.withdrawn_at.is_null())
    shadowed = _shadowed_by()
    return [_info(r, shadowed) for r in query]


def withdraw(release_id: int, operator: str) -> ReleaseInfo:
    with writing(database):
        row = FirmwareRelease.get_or_none(FirmwareRelease.id == release_id)
        if row is None:
            raise NotFoundError(f"no release {release_id}: see `airlock releases list`")
        if row.withdrawn_at is not None:
            raise ReleaseError(f"release {release_id} was already withdrawn on {row.withdrawn_at}")
        row.withdrawn_at, row.withdrawn_by = iso(utcnow()), operator
        row.save()
        audit.record(operator, "release.withdraw", f"release {release_id}", {"version": row.version})
    logger.info("release %s withdrawn by %s", release_id, operator)
    return _info(row)


def _info(row: FirmwareRelease, shadowed: dict[int, int] | None = None) -> ReleaseInfo:
    return ReleaseInfo(row.id, row.repository, row.target_path, row.version, json.loads(row.target_hardware),
                       row.length, row.sha256, row.hardware, row.group_tag, bool(row.allow_downgrade),
                       row.approved_at, row.approved_by, row.withdrawn_at, row.withdrawn_by,
                       (shadowed or {}).get(row.id))


# what a checking-in device should install -------------------------------------------------

# The releases that may apply to a device (its model's, its groups'), in the
# order decide() tries them.
_CANDIDATE_COLUMNS = "r.id, r.repository, r.target_path, r.version, r.target_hardware, r.allow_downgrade"
_CANDIDATE_ROWS = ("FROM firmware_release AS r WHERE r.withdrawn_at IS NULL AND (r.hardware = {hardware} "
                   "OR r.group_tag IN (SELECT t.tag FROM device_tag AS t WHERE t.device = {device}))")
_CANDIDATE_ORDER = "(r.group_tag IS NOT NULL) DESC, r.id DESC"
_CANDIDATES = (f"SELECT {_CANDIDATE_COLUMNS} {_CANDIDATE_ROWS.format(hardware='?', device='?')} "
               f"ORDER BY {_CANDIDATE_ORDER}")


def candidates_sql(hardware: str, device: str) -> str:
    """decide()'s candidate releases for the SQL expressions ``hardware`` and
    ``device`` (the device row's id), as one PostgreSQL JSON array of rows
    (NULL for none): for a statement that reads them along with a check-in's
    write (``server.devices.checkins``)."""
    return (f"(SELECT json_agg(json_build_array({_CANDIDATE_COLUMNS}) ORDER BY {_CANDIDATE_ORDER}) "
            f"{_CANDIDATE_ROWS.format(hardware=hardware, device=device)})")


def update_for(settings: Settings, db: SqliteDatabase, device: DeviceIdentity, firmware: str,
               flags: list[str] | None = None, now: int | None = None,
               candidates: list | None = None) -> UpdateOffer | None:
    """The update a device running ``firmware`` should install now, if any;
    the first time a release is offered to the device, the offer is recorded
    (with its health ``flags`` then) for the rollouts and its history.
    ``candidates``: decide()'s first read, if it was read already."""
    decision = decide(settings, db, device, firmware, candidates)
    if decision is None:
        return None
    offer, admission = decision
    gate.note_offer(db, device, offer.release_id, offer.version, admission, flags or [],
                    now if now is not None else now_unix())
    return offer


def decide(settings: Settings, db: SqliteDatabase, device: DeviceIdentity, firmware: str,
           candidates: list | None = None) -> tuple[UpdateOffer, gate.Admission] | None:
    """The one update-offer decision: which release, if any, a device is
    offered on this check-in.  Read-only and bounded: one query for the
    candidate releases (none when ``candidates`` are given: the rows that
    query returns, read with the check-in's write on PostgreSQL), then per
    candidate a cached target lookup and (for a release under a rollout)
    ``gate.admit``'s indexed reads.

    A release whose rollout does not admit the device yet (its wave has not
    started, the rollout is paused or halted) is passed over as if it were
    not approved, so an older release of the scope may still apply.  Further
    gates (maintenance windows) belong here, beside ``gate.admit``.
    """
    if candidates is None:
        candidates = execute_prepared(db, "airlock_candidates", _CANDIDATES, (device.hardware, device.pk)).fetchall()
    for rid, repo, path, version, hardware_json, allow_downgrade in candidates:
        if device.hardware not in json.loads(hardware_json):
            continue
        if TARGETS.find(settings.public_dir, repo, path) is None:
            continue  # no longer in the repository: a device could not fetch it
        admission = gate.admit(db, rid, device)
        if not admission.allowed:
            continue
        if not should_install(firmware, version, bool(allow_downgrade)):
            return None
        if not open_for_device(db, device.pk):
            return None  # outside its groups' maintenance windows (server.delivery.windows)
        return (UpdateOffer(rid, repo, path, version, f"/repos/{repo}/metadata/", f"/repos/{repo}/targets/"),
                admission)
    return None


def _unix(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp())


def _check_offered(device: DeviceIdentity, release: FirmwareRelease) -> None:
    """Refuse a report on a release that was never for this device.

    The release must list the device's hardware and be approved for its
    model or for a group it is in.  If it is withdrawn, the device may still
    be installing it, so its reports are taken from a device that already
    reported a step of it, or whose latest check-in came while it was active
    (that answer may have offered it); from any other device they are refused.
    """
    rid = release.id
    if device.hardware not in json.loads(release.target_hardware):
        raise ReleaseNotOfferedError(f"release {rid} is for {', '.join(json.loads(release.target_hardware))}, not "
                                     f"this device's model {device.hardware}: report only the release_id a check-in "
                                     "answered")
    if release.hardware is not None and release.hardware != device.hardware:
        raise ReleaseNotOfferedError(f"release {rid} is for model {release.hardware}, not {device.hardware}: "
                                     "report only the release_id a check-in answered")
    if release.group_tag is not None and not database.execute_sql(
            "SELECT 1 FROM device_tag WHERE device = ? AND tag = ?", (device.pk, release.group_tag)).fetchone():
        raise ReleaseNotOfferedError(f"release {rid} is for the group {release.group_tag}, which this device is not "
                                     "in: report only the release_id a check-in answered")
    if release.withdrawn_at is None:
        return
    started = database.execute_sql("SELECT 1 FROM update_report WHERE device = ? AND release_id = ? LIMIT 1",
                                   (device.pk, rid)).fetchone()
    (last_seen,) = database.execute_sql("SELECT last_seen FROM device WHERE id = ?", (device.pk,)).fetchone()
    offered = last_seen is not None and _unix(release.approved_at) <= last_seen <= _unix(release.withdrawn_at)
    if not (started or offered):
        raise ReleaseNotOfferedError(f"release {rid} was withdrawn on {release.withdrawn_at} before this device was "
                                     "offered it: do not install it; check in for the current release")


def record_report(device: DeviceIdentity, report: UpdateReportIn, *, now=None) -> bool:
    """Store an update report; False when this report_id was stored before."""
    stamp = iso(now or utcnow())
    status = json.dumps({"release_id": report.release_id, "step": report.step, "reason": report.reason,
                         "at": report.at}, separators=(",", ":"))
    with writing(database):
        still = database.execute_sql("SELECT 1 FROM device WHERE id = ? AND token_hash = ? AND state = 'accepted'",
                                     (device.pk, device.token_hash)).fetchone()
        if still is None:
            raise InvalidTokenError("the token was revoked: enroll again")
        release = FirmwareRelease.get_or_none(FirmwareRelease.id == report.release_id)
        if release is None:
            raise UnknownReleaseError(f"there is no release {report.release_id}: report the release_id that the "
                                      "check-in answered")
        if database.execute_sql("SELECT 1 FROM update_report WHERE device = ? AND report_id = ?",
                                (device.pk, report.report_id.lower())).fetchone():
            return False  # a resend is always answered as a duplicate, whatever changed since
        _check_offered(device, release)
        cursor = database.execute_sql(
            "INSERT INTO update_report (device, report_id, release_id, step, reason, at, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, report_id) DO NOTHING",
            (device.pk, report.report_id.lower(), report.release_id, report.step, report.reason, report.at, stamp))
        if cursor.rowcount == 0:
            return False
        database.execute_sql("UPDATE device SET update_status = ? WHERE id = ?", (status, device.pk))
        if report.step in ("success", "failure"):  # the wave's gate counts the latest outcome
            database.execute_sql("UPDATE update_offer SET outcome = ?, outcome_at = ? "
                                 "WHERE device = ? AND release_id = ?",
                                 (report.step, int((now or utcnow()).timestamp()), device.pk, report.release_id))
    if report.step == "failure":
        # the reason is the device's text: escaped again here, whoever called
        logger.warning("device %s: update to release %s failed: %s", escape_text(device.device_id),
                       report.release_id, escape_text(report.reason or "no reason given"))
    on_update_report(device.device_id, report.release_id, report.step, report.reason)
    return True
