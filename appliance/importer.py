"""The import pipeline: stage a bundle from media, verify it, publish it.

One import at a time (a lock file); the bundle is copied into the
appliance's own staging folder and hashed on the way; every repository in it
is verified against what the appliance trusts; only when all pass is
anything published, each repository with one atomic swap.  Accepted and
refused imports alike are recorded; a refused one changes nothing else.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from appliance.homelock import HomeLock
from appliance.recovery import reconcile
from server import freshness, timekeeping
from server.clock import now_iso, utcnow
from server.imports import services as imports
from server.imports.records import ImportOutcome
from server.repositories import services as repositories
from server.repositories.store import RepositoryStore
from server.settings import Settings
from signing.bundle import PHASE_PUBLISH, BundleLimits, Progress, scan_bundle
from signing.exceptions import AirlockError, VerificationError
from signing.paths import show
from signing.report import verify_staged_bundle
from signing.verify import VerifiedRepository

logger = logging.getLogger(__name__)


class ImportBusyError(AirlockError):
    """Another import holds the lock."""


class StagingSpaceError(AirlockError):
    """The appliance has no room for the bundle's files."""


class ExpiredUnchangedError(AirlockError):
    """The bundle holds nothing newer, and what is served has expired: devices
    refuse it.  Recorded as an unchanged import before it is raised."""


MAX_SKIPPED_LINES = 20  # ignored or unavailable targets named one per line; repo show lists them all


@dataclass
class RepositoryChange:
    name: str
    unchanged: bool
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    targets_added: list[str]
    targets_removed: list[str]
    skipped: list[dict] = field(default_factory=list)  # listed targets no client fetches there: path, role, why
    unavailable_roles: dict[str, str] = field(default_factory=dict)  # role -> why a client cannot load it
    notes: list[str] = field(default_factory=list)
    stale: str | None = None  # unchanged, and this served file has expired (which, since when)

    def lines(self) -> list[str]:
        """What a security officer should read besides the versions, one
        escaped line each."""
        out = [f"  {self.name}: {n}" for n in self.notes]
        out += [f"  {self.name}: role {show(r)} is unavailable: it {why}; targets behind it are not served"
                for r, why in sorted(self.unavailable_roles.items())]
        out += [f"  {self.name}: {s['state']} target {show(s['path'])} listed by {show(s['role'])}: {s['why']}"
                for s in self.skipped[:MAX_SKIPPED_LINES]]
        if len(self.skipped) > MAX_SKIPPED_LINES:
            out.append(f"  {self.name}: ... and {len(self.skipped) - MAX_SKIPPED_LINES} more targets no client "
                       f"finds there: see `airlock repo show {self.name}`")
        return out


@dataclass
class ImportResult:
    import_id: int
    status: str  # accepted | unchanged
    bundle_digest: str
    files: int
    bytes: int
    repositories: list[RepositoryChange] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.status == "unchanged":
            notes = [f"repository {show(r.name)}: {n}; nothing changed" for r in self.repositories for n in r.notes]
            return "\n".join(notes) or (f"already imported: bundle sha256:{self.bundle_digest[:16]}... holds "
                                         "nothing newer than what is served; nothing changed")
        parts = []
        details: list[str] = []
        for r in self.repositories:
            details += r.lines()
            if r.unchanged:
                parts.append(f"{r.name}: unchanged" + (f" ({expired_line(r.name, r.stale)})" if r.stale else ""))
                continue
            ver = ", ".join(f"{role} {r.versions_before.get(role, 'none')}->{v}"
                            for role, v in r.versions_after.items() if r.versions_before.get(role) != v)
            parts.append(f"{r.name}: {ver}; targets +{len(r.targets_added)} -{len(r.targets_removed)}")
        return "\n".join(["imported: " + "; ".join(parts), *details])


def expired_line(name: str, stale: str) -> str:
    """The served ``stale`` file has expired and the bundle holds nothing
    newer: what devices do, and what to do."""
    return (f"repository {show(name)}: the bundle holds nothing newer, and the served {stale}: devices refuse "
            "this repository's metadata until a delivery with newer metadata; ask the vendor for one")


class ImportLock(HomeLock):
    """The import lock, HOME/state/import.lock (:class:`HomeLock`); also taken
    by the other commands that must not run beside an import (timestamp
    refresh, repo remove, backup, restore), each saying what to do ``again``."""

    def __init__(self, settings: Settings, again: str = "import again"):
        super().__init__(settings, "import.lock", across="import", error=ImportBusyError,
                         busy="another import is running (pid {pid})", advice=f"wait for it to finish and {again}")


def import_bundle(settings: Settings, source: Path, operator: str, *, progress: Progress | None = None,
                  now: datetime | None = None) -> ImportResult:
    """Import the bundle at ``source``.  Raises :class:`AirlockError` (one
    line) when refused; the refusal is recorded and nothing else changes."""
    # a clock set back would make expired metadata verify: refused before anything is staged or recorded
    checked = timekeeping.trusted_now(settings, "import")
    started = now_iso()
    digest: str | None = None
    names: list[str] = []
    token = uuid.uuid4().hex
    with ImportLock(settings):
        reconcile(settings)
        staging = settings.staging_dir / f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        staged = None
        try:
            limits = BundleLimits(max_files=settings.max_bundle_files, max_total_bytes=settings.max_bundle_bytes)
            staged = scan_bundle(Path(source), staging, limits=limits, progress=progress)
            digest = staged.digest
            names = staged.repositories
            for name in names:
                _check_pinned(name)
            # a vendor timestamp that expired on the way is re-signed for verification where the root lets the
            # appliance; what the media delivered is put back before the digest is taken
            arrived = {name: found for name in names
                       if (found := freshness.resign_expired_on_arrival(settings, staged, name, now or checked))}
            try:
                verified = verify_staged_bundle(staged, lambda name: _trust_for(settings, name), now=now,
                                                progress=progress,
                                                before_copy=lambda n: _check_free_space(settings, n))
            finally:
                for name, (_vendor, entry) in arrived.items():
                    staged.metadata[f"{name}/metadata/timestamp.json"] = entry
            for v in verified:
                if v.name in arrived and not v.unchanged:
                    v.notes.append(f"timestamp.json: the vendor's timestamp expired on the way; re-signed by the "
                                   f"appliance as version {v.versions_after['timestamp']}, naming the vendor's "
                                   "snapshot")
            digest = staged.digest  # now over the content of the target files copied too
            changed = [v for v in verified if not v.unchanged]
            for v in verified:
                if v.unchanged:  # judged by what devices hold: the appliance's timestamp, if it serves one
                    v.stale = freshness.stale_served(RepositoryStore(settings.public_dir, v.name), now or checked)
            # a vendor timestamp not above the appliance's own is re-signed above it (or refused) before anything
            # is published
            vendor_timestamps = {v.name: arrived[v.name][0] if v.name in arrived else freshness.timestamp_for_import(
                settings, RepositoryStore(settings.public_dir, v.name), v, now or checked) for v in changed}
            if progress is not None and changed:
                progress(0, None, staged.files_copied, phase=PHASE_PUBLISH)
            for v in changed:
                # what the record will say, kept with the publication in case we die before writing it
                publication = {"token": token, "started_at": started, "operator": operator, "source": str(source),
                               "bundle_digest": digest, "change": _change_dict(_change(v))}
                RepositoryStore(settings.public_dir, v.name).publish(
                    v, grace_period=settings.grace_period, now=now, publication=publication,
                    vendor_timestamp=vendor_timestamps[v.name])
            status = "accepted" if changed else "unchanged"
            changes = [_change(v) for v in verified]
            stale = [expired_line(c.name, c.stale) for c in changes if c.stale]
            if not changed and stale:
                reason = "; ".join(stale) + "; nothing changed"
                record_id = _record(started, operator, source, digest, status, reason, names, changes)
                timekeeping.record("verified", checked, f"import {record_id}")
                raise ExpiredUnchangedError(reason)
            record_id = _record(started, operator, source, digest, status, None, names, changes,
                                token if changed else None)
            timekeeping.record("verified", checked, f"import {record_id}")
            return ImportResult(record_id, status, digest, staged.files, staged.total_bytes, changes)
        except ExpiredUnchangedError:
            raise  # recorded above, as unchanged
        except AirlockError as exc:
            digest = staged.digest if staged is not None else digest
            _record(started, operator, source, digest, "refused", str(exc), names, [])
            logger.warning("import of %s refused: %s", show(str(source)), exc)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def reconcile_if_idle(settings: Settings):
    """Start-up reconciliation, unless an import is running right now (it
    reconciles itself).  Returns the reconciliation, or None when busy."""
    try:
        with ImportLock(settings):
            return reconcile(settings)
    except ImportBusyError:
        return None


def remove_repository(settings: Settings, name: str, operator: str, *, archive: bool = False
                      ) -> repositories.RemovedRepository:
    """``airlock repo remove``: under the import lock, so that no import
    publishes into the repository while its pin goes."""
    with ImportLock(settings, "remove it again"):
        reconcile(settings)
        return repositories.remove_repository(settings, name, operator, archive=archive)


def _check_pinned(name: str) -> None:
    if not repositories.is_pinned(name):
        raise VerificationError(f"the bundle holds repository {show(name)}, which is not pinned on this "
                                f"appliance; a security officer must first run `airlock repo add {name} ...`")


def _trust_for(settings: Settings, name: str):
    store = RepositoryStore(settings.public_dir, name)
    return freshness.trusted_for_import(store), store.read_metadata, lambda rel: store.has_target(rel) or None


# Room kept free on the appliance's disk beyond what a bundle needs: the
# database and logs must still be writable after an import.
FREE_SPACE_MARGIN = 256 * 1024 * 1024  # bytes


def _check_free_space(settings: Settings, needed: int) -> None:
    free = shutil.disk_usage(settings.staging_dir).free
    if needed + FREE_SPACE_MARGIN > free:
        raise StagingSpaceError(
            f"the bundle's new target files need {needed} bytes (by their signed lengths) plus a "
            f"{FREE_SPACE_MARGIN}-byte margin, but only {free} bytes are free under {settings.home}; "
            "free space on the appliance and import again")


def _change(v: VerifiedRepository) -> RepositoryChange:
    return RepositoryChange(v.name, v.unchanged, v.versions_before, v.versions_after, v.targets_added,
                            v.targets_removed, [s.to_dict() for s in v.skipped], dict(v.unavailable_roles),
                            list(v.notes), v.stale)


def _change_dict(c: RepositoryChange) -> dict:
    out = {"unchanged": c.unchanged, "versions_before": c.versions_before, "versions_after": c.versions_after,
           "targets_added": c.targets_added, "targets_removed": c.targets_removed}
    extra = {"skipped": c.skipped, "unavailable_roles": c.unavailable_roles, "notes": c.notes, "stale": c.stale}
    out.update({k: v for k, v in extra.items() if v})  # records stay as they were when there is nothing to add
    return out


def _record(started: str, operator: str, source: Path, digest: str | None, status: str, reason: str | None,
            names: list[str], changes: list[RepositoryChange], token: str | None = None) -> int:
    """The import's record and its audit record, written together."""
    return imports.record_import(ImportOutcome(
        started_at=started, operator=operator, source=str(source), bundle_digest=digest, status=status,
        reason=reason, names=names, repositories={c.name: _change_dict(c) for c in changes}, publication=token))
