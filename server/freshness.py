"""Fresh timestamps between deliveries: the appliance re-signs a
repository's ``timestamp.json`` with its own key, when the repository's
current trusted root authorizes that key for timestamp, threshold 1
(:func:`signing.appliance_timestamp.authorization`).

- :func:`refresh` (``airlock timestamp refresh``, run hourly by
  ``airlock-timestamp.timer``): a served timestamp that expires within
  ``timestamp_refresh_before`` is replaced by one the appliance signs, valid
  ``timestamp_lifetime``, version one above the served one, naming the
  vendor's current snapshot; published as a new generation of the tree
  (:meth:`RepositoryStore.replace_timestamp`), atomically.
- :func:`timestamp_for_import`: a vendor timestamp arriving in a bundle is
  verified against the vendor's previous one (:func:`trusted_for_import`),
  not against the appliance's, so that a vendor version below the
  appliance's still imports as long as the snapshot does not roll back;
  it is then re-signed above the served version before it is published, so
  devices never see the version go back.
- :func:`freshness_of`: what ``airlock status``, ``/healthz`` and
  ``/metrics`` say: authorized or why not, days left, and, when the
  appliance may not re-sign, a warning ahead of expiry with what devices
  will do.

Nothing here changes which files are genuine: snapshot and targets stay the
vendor's, byte for byte; the appliance only vouches that the vendor's
snapshot is still the current one.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from tuf.api.metadata import Metadata, Root, Timestamp

from server import audit
from server.clock import iso
from server.repositories.services import list_repositories
from server.repositories.store import RepositoryStore
from server.settings import Settings
from server.timestamp_key import TimestampKeyError, timestamp_public_key, timestamp_signer
from signing.appliance_timestamp import (
    authorization,
    check_as_client,
    final_root_if_only_expired,
    resign_timestamp,
    still_held,
)
from signing.bundle import StagedBundle, StagedFile
from signing.exceptions import VerificationError
from signing.paths import show
from signing.trust import MAX_LENGTH
from signing.verify import TrustedState, VerifiedRepository, when

logger = logging.getLogger(__name__)

SOON = 7  # days: a timestamp the appliance may not re-sign is warned about this long before it expires


@dataclass
class TimestampFreshness:
    repository: str
    authorized: bool
    why_not: str | None  # why the appliance may not re-sign (None when it may)
    version: int | None = None  # of the served timestamp.json
    signed_by: str | None = None  # vendor | appliance
    expires: str | None = None  # ISO 8601, UTC
    days_left: float | None = None
    warning: str | None = None  # not authorized, and it expires within SOON days (or has): what devices will do

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RefreshOutcome:
    repository: str
    action: str  # re-signed | fresh | not authorized | nothing served
    line: str


def _keyid(settings: Settings) -> str | None:
    try:
        return timestamp_public_key(settings).keyid
    except TimestampKeyError:
        return None


def _root(state: TrustedState) -> Root:
    return Metadata[Root].from_bytes(state.root).signed


def freshness_of(settings: Settings, name: str, now: datetime, keyid: str | None = None) -> TimestampFreshness:
    """The served timestamp of ``name``: who signed it, days left, whether
    the appliance may re-sign it, and a warning when it may not and expiry
    is near."""
    keyid = keyid or _keyid(settings)
    store = RepositoryStore(settings.public_dir, name)
    if not store.exists():
        return TimestampFreshness(name, False, "nothing is published yet")
    state = store.trusted_state()
    why = authorization(_root(state), keyid) if keyid else "the appliance has no timestamp key: run `airlock init`"
    out = TimestampFreshness(name, why is None, why)
    served = state.roles.get("timestamp")
    if served is None:
        return out
    md = Metadata[Timestamp].from_bytes(served)
    out.version, out.expires = md.signed.version, iso(md.signed.expires)
    out.signed_by = "appliance" if keyid in md.signatures and store.vendor_timestamp() is not None else "vendor"
    out.days_left = round((md.signed.expires - now).total_seconds() / 86400, 1)
    if why is not None and out.days_left < SOON:
        when = (f"expired {abs(out.days_left):.1f} days ago" if out.days_left < 0
                else f"expires in {out.days_left:.1f} days")
        # repository names are checked on pinning (signing.paths.check_repo_name): safe to print as they are
        out.warning = (f"repository {name}: timestamp.json v{out.version} {when} and the appliance may not "
                       f"re-sign it ({why}); {'devices now refuse' if out.days_left < 0 else 'then devices refuse'} "
                       f"every update from {name} and keep their firmware until a bundle with a newer "
                       "timestamp is imported")
    return out


def all_freshness(settings: Settings, now: datetime) -> list[TimestampFreshness]:
    keyid = _keyid(settings)
    return [freshness_of(settings, r.name, now, keyid) for r in list_repositories()]


def refresh(settings: Settings, now: datetime, operator: str, *, force: bool = False) -> list[RefreshOutcome]:
    """Re-sign each authorized repository's timestamp that expires within
    ``timestamp_refresh_before`` (every one with ``force``).  The caller
    holds the import lock and has checked the clock
    (:func:`server.timekeeping.trusted_now`)."""
    keyid = timestamp_public_key(settings).keyid
    signer = None
    out = []
    for repo in list_repositories():
        store = RepositoryStore(settings.public_dir, repo.name)
        state = store.trusted_state() if store.exists() else None
        served = state.roles.get("timestamp") if state is not None else None
        if state is None or served is None:
            out.append(RefreshOutcome(repo.name, "nothing served", f"{repo.name}: nothing imported yet"))
            continue
        held = Metadata[Timestamp].from_bytes(served).signed
        left = held.expires - now
        why = authorization(_root(state), keyid)
        if why is not None:
            fresh = freshness_of(settings, repo.name, now, keyid)
            out.append(RefreshOutcome(repo.name, "not authorized", f"{repo.name}: nothing signed: {why}; "
                                      f"timestamp.json v{held.version} expires {iso(held.expires)}"
                                      + (f"; {fresh.warning}" if fresh.warning else "")))
            continue
        if left > timedelta(seconds=settings.timestamp_refresh_before) and not force:
            out.append(RefreshOutcome(repo.name, "fresh", f"{repo.name}: timestamp.json v{held.version} is fresh "
                                      f"until {iso(held.expires)}; nothing signed"))
            continue
        signer = signer or timestamp_signer(settings)
        vendor = store.vendor_timestamp() or served
        new = resign_timestamp(vendor, version=held.version + 1,
                               expires=now + timedelta(seconds=settings.timestamp_lifetime), signer=signer)
        check_as_client(state.root, served, new, now)
        store.replace_timestamp(new, vendor)
        snapshot = Metadata[Timestamp].from_bytes(vendor).signed.snapshot_meta.version
        line = (f"{repo.name}: re-signed timestamp.json v{held.version + 1}, naming the vendor's snapshot "
                f"v{snapshot}, valid until {iso(now + timedelta(seconds=settings.timestamp_lifetime))}")
        stale = stale_served(store, now)
        if stale:  # a fresh timestamp cannot help: the vendor's own snapshot or targets has lapsed
            line += (f"; but the vendor's {stale}: devices refuse {repo.name}'s updates until a bundle with newer "
                     "metadata is imported")
        audit.record(operator, "timestamp.refresh", repo.name,
                     {"version": held.version + 1, "snapshot": snapshot, "previous": held.version})
        logger.info("%s", line)
        out.append(RefreshOutcome(repo.name, "re-signed", line))
    return out


def trusted_for_import(store: RepositoryStore) -> TrustedState:
    """What an import verifies a bundle against: the served tree, except
    that when the served timestamp is the appliance's own, the vendor's
    previous timestamp stands in for it, so that the vendor's versions are
    compared with the vendor's (and the snapshot with the one served)."""
    state = store.trusted_state()
    vendor = store.vendor_timestamp()
    if vendor is not None:
        state.roles["timestamp"] = vendor
    return state


def timestamp_for_import(settings: Settings, store: RepositoryStore, verified: VerifiedRepository,
                         now: datetime) -> bytes | None:
    """Before ``verified`` is published: when its new vendor timestamp's
    version is not above the one devices hold, replace it in
    ``verified.metadata`` with one the appliance signs above it (refused
    when the appliance may not); returns the vendor timestamp to keep
    beside it (:meth:`RepositoryStore.publish`'s ``vendor_timestamp``), or
    None when the vendor's is served as it is."""
    vendor = verified.metadata.get("timestamp.json")
    held_bytes = store.trusted_state().roles.get("timestamp") if store.exists() else None
    if held_bytes is None:
        return None
    held = Metadata[Timestamp].from_bytes(held_bytes).signed.version
    root_bytes = verified.metadata.get(verified.current["root"]) or store.read_metadata(
        verified.current["root"], 1 << 20)
    if root_bytes is None:
        raise VerificationError(f"repository {show(verified.name)}: the final root is missing; nothing changed")
    keyid = _keyid(settings)
    root = Metadata[Root].from_bytes(root_bytes).signed
    why = authorization(root, keyid) if keyid else "it has no timestamp key"
    if vendor is None:
        if why is not None and store.vendor_timestamp() is not None:  # ours stays served, and the new root refuses it
            raise VerificationError(
                f"repository {show(verified.name)}: timestamp.json: the served timestamp version {held} is the "
                f"appliance's, and the bundle's new root no longer lets the appliance sign it ({why}), so devices "
                "could not verify it; the vendor must ship that root with a new timestamp")
        return None
    version = Metadata[Timestamp].from_bytes(vendor).signed.version
    if version > held:
        return None  # the vendor's own, served byte for byte
    if not still_held(root, held_bytes):
        # the new root rotated the keys of the timestamp devices hold: like TUF clients, nothing to roll back from
        return None
    if why is not None:  # devices keep the appliance's as baseline, yet the appliance may not sign above it
        raise VerificationError(
            f"repository {show(verified.name)}: timestamp.json: the bundle's timestamp version {version} is not above "
            f"version {held}, which this appliance signed and devices hold: devices would refuse it as a rollback, "
            f"and the appliance may not re-sign it ({why}); the vendor must publish a timestamp above version {held}")
    new = resign_timestamp(vendor, version=held + 1, expires=now + timedelta(seconds=settings.timestamp_lifetime),
                           signer=timestamp_signer(settings))
    check_as_client(root_bytes, held_bytes, new, now)
    verified.metadata["timestamp.json"] = new
    verified.notes.append(f"timestamp.json: the vendor's version {version} is not above version {held} devices "
                          f"hold; re-signed by the appliance as version {held + 1}, naming the vendor's snapshot")
    return vendor


def stale_served(store: RepositoryStore, now: datetime) -> str | None:
    """Which served file has expired, as a client refreshing the served tree
    meets it (timestamp, then snapshot, then top-level targets), or None."""
    state = store.trusted_state()
    for role in ("timestamp", "snapshot", "targets"):
        data = state.roles.get(role)
        if data is None:
            return None
        signed = Metadata.from_bytes(data).signed
        if signed.is_expired(now):
            name = "timestamp.json" if role == "timestamp" else f"{signed.version}.{role}.json"
            return f"{name} expired on {when(signed.expires)}"
    return None


def resign_expired_on_arrival(settings: Settings, staged: StagedBundle, name: str, now: datetime
                              ) -> tuple[bytes, StagedFile] | None:
    """A bundle's vendor timestamp that expired on the way (the delivery took
    longer than it lives) but verifies otherwise, for a repository whose
    (final) root authorizes the appliance's key: replace it in ``staged``,
    for verification, by one the appliance signs (version above both the
    vendor's and the served one, naming the vendor's snapshot).  Returns the
    vendor's bytes and the staged entry to put back once verified (the
    bundle digest covers what the media delivered), or None."""
    store = RepositoryStore(settings.public_dir, name)
    entry = staged.metadata_file(name, "timestamp.json")
    keyid = _keyid(settings)
    if entry is None or keyid is None or not store.exists() or entry.size > MAX_LENGTH["timestamp"]:
        return None
    vendor = entry.path.read_bytes()
    state = store.trusted_state()
    new_roots: list[bytes] = []
    version = _root(state).version + 1
    while (root_entry := staged.metadata_file(name, f"{version}.root.json")) is not None \
            and root_entry.size <= MAX_LENGTH["root"] and len(new_roots) < 256:
        new_roots.append(root_entry.path.read_bytes())
        version += 1
    previous = store.vendor_timestamp() or state.roles.get("timestamp")
    root = final_root_if_only_expired(state.root, new_roots, previous, vendor, now)
    if root is None or authorization(root, keyid) is not None:
        return None
    held = Metadata[Timestamp].from_bytes(state.roles["timestamp"]).signed.version if "timestamp" in state.roles \
        else 0
    number = max(held, Metadata[Timestamp].from_bytes(vendor).signed.version) + 1
    ours = resign_timestamp(vendor, version=number, expires=now + timedelta(seconds=settings.timestamp_lifetime),
                            signer=timestamp_signer(settings))
    path = staged.root / f".appliance-timestamp-{name}.json"
    path.write_bytes(ours)
    staged.metadata[f"{name}/metadata/timestamp.json"] = StagedFile(
        entry.relpath, path, len(ours), {"sha256": hashlib.sha256(ours).hexdigest()})
    return vendor, entry
