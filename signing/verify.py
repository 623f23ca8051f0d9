"""Verify a repository in a bundle exactly as a TUF client would.

The starting point is always what the appliance already trusts (or, for
``airlock-sign verify``, the pinned root), never what the bundle says about
itself.  The checks are python-tuf's own client code (its trusted metadata
set), driven in the client's order: the root chain one version at a time,
timestamp, snapshot, top-level targets, then *every* delegated role in the
graph, not only those on the way to some target.  Then every target file:
length and every listed hash.

Metadata bytes are kept as read, so that what is published is byte for byte
what the vendor signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.api.serialization import DeserializationError
from tuf.api.metadata import Metadata, Root, SuccinctRoles, TargetFile, Targets
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from signing.bundle import _new_hash
from signing.exceptions import UnsafeNameError, VerificationError
from signing.paths import check_role_name, check_target_path, show
from signing.trust import (  # noqa: F401 - re-exported: the verifier's vocabulary
    MAX_LENGTH,
    MetadataLookup,
    RoleSummary,
    TrustedState,
    describe_role,
    refuse_duplicate_key_values,
    refuse_duplicate_root_keys,
    root_versions,
    same_signed_content,
    trusted_state_from,
    valid_signers,
)

logger = logging.getLogger(__name__)

MAX_ROOT_ROTATIONS = 256  # root versions in one bundle, as ngclient
MAX_DELEGATIONS = 10_000  # (delegator, role) edges walked in one repository
HASH_CHUNK = 1024 * 1024  # bytes
TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")

# lookup(relpath under targets/) -> (path, size, sha256) or None
TargetLookup = Callable[[str], "tuple[Path, int, str | None] | None"]


def custom_of(target_file) -> dict:
    """A target's custom metadata as a dict: ``{}`` when the target has none
    (TUF makes ``custom`` optional, and python-tuf then gives None) or when
    it is not a JSON object."""
    custom = target_file.custom
    return dict(custom) if isinstance(custom, dict) else {}


@dataclass
class TargetEntry:
    """A target listed by a verified role, and where its bytes are."""

    path: str
    length: int
    hashes: dict[str, str]
    custom: dict
    role: str
    source: Path | None  # staged copy to publish, once copied and checked; None when the store holds it
    filenames: list[str]  # hash-prefixed names under targets/, one per hash
    bundle_relpath: str | None = None  # the bundle's file to copy; None when the store holds it


@dataclass
class VerifiedRepository:
    """The outcome of verifying one repository of a bundle."""

    name: str
    unchanged: bool
    metadata: dict[str, bytes]  # every file the new tree adds, name -> bytes
    current: dict[str, str]  # role -> versioned file name serving it now
    targets: list[TargetEntry]
    versions_before: dict[str, int]
    versions_after: dict[str, int]
    targets_before: set[str]
    targets_after: set[str]
    roles: list[RoleSummary]

    @property
    def targets_added(self) -> list[str]:
        return sorted(self.targets_after - self.targets_before)

    @property
    def targets_removed(self) -> list[str]:
        return sorted(self.targets_before - self.targets_after)

    @property
    def bytes_to_publish(self) -> int:
        return sum(t.length for t in self.targets if t.source is not None)


class _Refusal:
    """Builds one-line reasons: which file, which check, what to do."""

    def __init__(self, repo: str):
        self.repo = repo

    def __call__(self, filename: str, what: str, advice: str = "ask the vendor for a correctly signed bundle") -> VerificationError:
        return VerificationError(f"repository {show(self.repo)}: {filename}: {what}; {advice}")

    def from_tuf(self, filename: str, exc: Exception) -> VerificationError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
            return self(filename, f"signature check failed ({detail})",
                        "it must be signed by the threshold of keys the trusted root names")
        if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
            return self(filename, f"expired ({detail})", "ask the vendor to re-sign it with a later expiry")
        if isinstance(exc, tuf_exceptions.BadVersionNumberError):
            return self(filename, f"version check failed ({detail}): rollback refused",
                        "versions may never go back; ask the vendor for a newer bundle")
        if isinstance(exc, tuf_exceptions.LengthOrHashMismatchError):
            return self(filename, f"length or hash differs from what the signed metadata lists ({detail})",
                        "the file was altered or mixed from another release; get a fresh copy of the bundle")
        if isinstance(exc, DeserializationError):
            return self(filename, f"not valid TUF metadata ({detail})")
        return self(filename, f"refused by TUF verification ({detail})")


def verify_repository(
    name: str,
    trusted: TrustedState,
    bundle_metadata: MetadataLookup,
    store_metadata: MetadataLookup,
    bundle_target: TargetLookup,
    store_target: TargetLookup,
    *,
    now: datetime | None = None,
    absent_targets_held: bool = False,
) -> VerifiedRepository:
    """Verify the repository ``name`` of a bundle against ``trusted``.

    Metadata files are looked up in the bundle first, then in the store
    (files the appliance already serves); a versioned file present in both
    must be identical.  With ``absent_targets_held`` (``airlock-sign verify
    --incremental``, which has no store to look in) a target file absent
    from the bundle is assumed to be on the appliance; one that is present
    is still checked.  Raises :class:`VerificationError` with one line.
    """
    refuse = _Refusal(name)
    now = now or datetime.now(timezone.utc)
    added: dict[str, bytes] = {}

    def fetch(filename: str, cap: int, *, required: bool = True) -> bytes | None:
        data = bundle_metadata(filename, cap)
        known = store_metadata(filename, cap)
        if data is not None and known is not None and data != known:
            if not same_signed_content(data, known):
                raise refuse(filename, "differs from the file of the same name the appliance already serves "
                             "(a version number was reused)", "the vendor must publish a new version")
            data = None  # laid out differently, same signed content: keep serving ours
        if data is None:
            data = known
        elif known is None:
            added[filename] = data
        if data is None and required:
            raise refuse(filename, "missing from the bundle", "the bundle must hold every metadata file the "
                         "snapshot lists; write a complete bundle")
        return data

    try:
        tset = TrustedMetadataSet(trusted.root, EnvelopeType.METADATA)
    except tuf_exceptions.RepositoryError as exc:
        raise refuse("root.json", f"the trusted root does not verify ({exc})", "re-pin the vendor's root") from None
    tset.reference_time = now
    refuse_duplicate_root_keys(refuse, f"{tset.root.version}.root.json", tset.root)
    before = _versions(trusted)
    targets_before = _target_paths(trusted)

    # 1. the root chain, one version at a time
    new_roots = 0
    version = tset.root.version + 1
    while True:
        filename = f"{version}.root.json"
        data = fetch(filename, MAX_LENGTH["root"], required=False)
        if data is None:
            break
        if new_roots >= MAX_ROOT_ROTATIONS:
            raise refuse(filename, f"more than {MAX_ROOT_ROTATIONS} root versions in one bundle")
        try:
            tset.update_root(data)
        except tuf_exceptions.RepositoryError as exc:
            raise refuse.from_tuf(filename, exc) from None
        except Exception as exc:  # noqa: BLE001 - malformed JSON and friends
            raise refuse(filename, f"not valid TUF root metadata ({exc})") from None
        refuse_duplicate_root_keys(refuse, filename, tset.root)
        new_roots += 1
        version += 1
    root_file = f"{tset.root.version}.root.json"
    if not tset.root.consistent_snapshot:
        raise refuse(root_file, "root disables consistent snapshots, which Airlock requires to publish "
                     "atomically", "the vendor must set consistent_snapshot true in root")
    if tset.root.is_expired(now):
        raise refuse(root_file, f"the final root expired on {tset.root.expires:%Y-%m-%d %H:%M} UTC",
                     "ask the vendor for a bundle with a new root version")

    # 2. timestamp: the trusted one first, for rollback protection
    if "timestamp" in trusted.roles:
        try:
            tset.update_timestamp(trusted.roles["timestamp"])
        except tuf_exceptions.RepositoryError as exc:
            logger.debug("trusted timestamp not valid as final: %s", exc)
    ts_data = bundle_metadata("timestamp.json", MAX_LENGTH["timestamp"])
    if ts_data is None:
        raise refuse("timestamp.json", "missing from the bundle", "write a complete bundle")
    unchanged_timestamp = False
    try:
        tset.update_timestamp(ts_data)
    except tuf_exceptions.EqualVersionNumberError:
        known_ts = trusted.roles.get("timestamp") or b""
        if ts_data != known_ts and not same_signed_content(ts_data, known_ts):
            raise refuse("timestamp.json", f"version {tset.timestamp.version} is already trusted with "
                         "different content (a version number was reused)",
                         "the vendor must publish a new timestamp version") from None
        unchanged_timestamp = True
    except tuf_exceptions.RepositoryError as exc:
        raise refuse.from_tuf("timestamp.json", exc) from None
    except Exception as exc:  # noqa: BLE001
        raise refuse("timestamp.json", f"not valid TUF timestamp metadata ({exc})") from None
    if unchanged_timestamp and tset.timestamp.is_expired(now):
        raise refuse("timestamp.json", f"expired on {tset.timestamp.expires:%Y-%m-%d %H:%M} UTC",
                     "ask the vendor to re-sign it with a later expiry")
    if not unchanged_timestamp:
        added["timestamp.json"] = ts_data
    if unchanged_timestamp and new_roots == 0:
        return _unchanged(name, trusted, before, targets_before)

    # 3. snapshot
    snap_meta = tset.timestamp.snapshot_meta
    snap_file = f"{snap_meta.version}.snapshot.json"
    if _load_trusted_copy(tset.update_snapshot, trusted.roles.get("snapshot"), trusted=True):
        snap_data = trusted.roles["snapshot"]
        fetch(snap_file, snap_meta.length or MAX_LENGTH["snapshot"], required=False)
    else:
        snap_data = fetch(snap_file, snap_meta.length or MAX_LENGTH["snapshot"])
        _apply(refuse, snap_file, lambda: tset.update_snapshot(snap_data))
    root_data = fetch(f"{tset.root.version}.root.json", MAX_LENGTH["root"], required=False) or trusted.root
    current_bytes = {"root": root_data, "timestamp": ts_data, "snapshot": snap_data}

    # 4. top-level targets, then every delegated role in the graph
    loaded: dict[str, Metadata] = {}
    summaries: list[RoleSummary] = _top_level_summaries(tset, current_bytes)
    targets_md = _load_targets(tset, refuse, fetch, trusted, "targets", "root")
    loaded["targets"] = targets_md
    summaries.append(describe_role("targets", targets_md, tset.root, "root"))
    scope: dict[str, list] = {"targets": []}  # role -> DelegatedRole objects it was reached through
    edges: set[tuple[str, str]] = set()
    # depth first, with each role's chain of delegators, to name a cycle
    stack: list[tuple[str, Metadata, tuple[str, ...]]] = [("targets", targets_md, ("targets",))]
    while stack:
        parent_name, parent_md, chain = stack.pop()
        parent_file = f"{parent_md.signed.version}.{parent_name}.json"
        delegations = parent_md.signed.delegations
        if delegations is None:
            continue
        if delegations.roles is not None:
            children = [(r.name, r) for r in delegations.roles.values()]
            for r in delegations.roles.values():
                refuse_duplicate_key_values(refuse, parent_file, r.name, r.keyids, delegations.keys)
        else:
            succinct = delegations.succinct_roles
            children = [(n, succinct) for n in succinct.get_roles()]
            refuse_duplicate_key_values(refuse, parent_file, "succinct roles", succinct.keyids, delegations.keys)
        for role_name, role in reversed(children):
            try:
                check_role_name(role_name)
            except UnsafeNameError as exc:
                raise refuse(parent_file, str(exc)) from None
            if role_name in chain:
                cycle = " -> ".join((*chain[chain.index(role_name):], role_name))
                raise refuse(parent_file, f"delegation cycle {cycle}",
                             "the vendor must remove the delegation that points back")
            if (parent_name, role_name) in edges:
                continue
            edges.add((parent_name, role_name))
            if len(edges) > MAX_DELEGATIONS:
                raise refuse(parent_file, f"more than {MAX_DELEGATIONS} delegations in the repository",
                             "the vendor must use fewer roles (or succinct hash bins)")
            md = _load_targets(tset, refuse, fetch, trusted, role_name, parent_name)
            scope.setdefault(role_name, []).append(role)
            summaries.append(describe_role(role_name, md, parent_md.signed, parent_name))
            if role_name not in loaded:
                loaded[role_name] = md
                stack.append((role_name, md, (*chain, role_name)))

    # 5. every target of every role: names, algorithms, length, hashes
    entries = _check_targets(refuse, loaded, scope, bundle_target, store_target, absent_targets_held)

    after = {"root": tset.root.version, "timestamp": tset.timestamp.version,
             "snapshot": tset.snapshot.version}
    current = {"root": root_file, "timestamp": "timestamp.json", "snapshot": snap_file}
    for role_name, md in loaded.items():
        after[role_name] = md.signed.version
        current[role_name] = f"{md.signed.version}.{role_name}.json"
    return VerifiedRepository(
        name=name, unchanged=False, metadata=added, current=current, targets=entries,
        versions_before=before, versions_after=after,
        targets_before=targets_before, targets_after={e.path for e in entries}, roles=summaries,
    )


def check_root_keys(name: str, filename: str, root: Root) -> None:
    """Raise :class:`VerificationError` if a root lists a key twice."""
    refuse_duplicate_root_keys(_Refusal(name), filename, root)


def _apply(refuse: _Refusal, filename: str, step: Callable) -> object:
    try:
        return step()
    except tuf_exceptions.RepositoryError as exc:
        raise refuse.from_tuf(filename, exc) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise refuse(filename, f"not valid TUF metadata ({type(exc).__name__}: {exc})") from None


def _load_trusted_copy(update: Callable, data: bytes | None, **kwargs) -> bool:
    """Load a copy the appliance already trusts; True if it is valid as final."""
    if data is None:
        return False
    try:
        update(data, **kwargs)
        return True
    except tuf_exceptions.RepositoryError as exc:
        logger.debug("trusted copy not valid as final: %s", exc)
        return False


def _load_targets(tset, refuse, fetch, trusted: TrustedState, role: str, delegator: str) -> Metadata:
    meta = tset.snapshot.meta.get(f"{role}.json")
    if meta is None:
        raise refuse(f"{tset.snapshot.version}.snapshot.json",
                     f"role {show(role)} is delegated by {show(delegator)} but missing from the snapshot")
    filename = f"{meta.version}.{role}.json"
    local = trusted.roles.get(role)
    if local is not None:
        try:
            tset.update_delegated_targets(local, role, delegator)
            fetch(filename, meta.length or MAX_LENGTH["targets"], required=False)
            return Metadata.from_bytes(local)
        except tuf_exceptions.RepositoryError as exc:
            logger.debug("trusted %s not valid as final: %s", role, exc)
    data = fetch(filename, meta.length or MAX_LENGTH["targets"])
    _apply(refuse, filename, lambda: tset.update_delegated_targets(data, role, delegator))
    return Metadata.from_bytes(data)


def _top_level_summaries(tset, current_bytes: dict[str, bytes]) -> list[RoleSummary]:
    return [describe_role(role, Metadata.from_bytes(current_bytes[role]), tset.root, "root")
            for role in ("root", "timestamp", "snapshot")]


def _check_targets(refuse, loaded: dict[str, Metadata], scope, bundle_target, store_target,
                   absent_targets_held: bool) -> list[TargetEntry]:
    entries: list[TargetEntry] = []
    for role_name, md in loaded.items():
        role_file = f"{md.signed.version}.{role_name}.json"
        for path, tf in md.signed.targets.items():
            try:
                check_target_path(path)
            except UnsafeNameError as exc:
                raise refuse(role_file, str(exc)) from None
            if role_name != "targets" and not any(_delegates(r, role_name, path) for r in scope[role_name]):
                raise refuse(role_file, f"lists target {show(path)} outside the paths delegated to "
                             f"{show(role_name)}", "the vendor must sign it with the role that owns that path")
            entries.append(_check_target(refuse, role_file, role_name, path, tf, bundle_target, store_target,
                                         absent_targets_held))
    return entries


def _delegates(role, role_name: str, path: str) -> bool:
    """Whether the delegation ``role`` hands ``path`` to ``role_name``."""
    if isinstance(role, SuccinctRoles):
        return role.get_role_for_target(path) == role_name
    return role.is_delegated_path(path)


def _check_target(refuse, role_file, role_name, path, tf: TargetFile, bundle_target, store_target,
                  absent_targets_held: bool) -> TargetEntry:
    if not tf.hashes:
        raise refuse(role_file, f"target {show(path)} lists no hashes")
    for algorithm in tf.hashes:
        try:
            _new_hash(algorithm)
        except ValueError:
            raise refuse(role_file, f"target {show(path)} uses the hash algorithm {show(algorithm)}, "
                         "which cannot be checked", "the vendor must list sha256 or sha512") from None
    folder, _, base = path.rpartition("/")
    prefix = f"{folder}/" if folder else ""
    filenames = [f"{prefix}{digest}.{base}" for digest in tf.hashes.values()]
    for relpath in filenames:
        try:
            check_target_path(relpath)
        except UnsafeNameError as exc:
            raise refuse(role_file, str(exc)) from None
    entry = TargetEntry(path, tf.length, dict(tf.hashes), custom_of(tf), role_name, None, filenames)
    if any(store_target(relpath) is not None for relpath in filenames):
        return entry  # already published: verified when it came in
    for relpath in filenames:
        size = bundle_target(relpath)
        if size is not None:
            if size != tf.length:
                raise refuse(f"targets/{relpath}", f"target {show(path)} is {size} bytes but {role_file} lists "
                             f"{tf.length}", "the file was altered or truncated; get a fresh copy of the bundle")
            entry.bundle_relpath = relpath
            return entry
    if absent_targets_held:
        return entry  # an incremental bundle: the appliance must hold it
    raise refuse(f"targets/{filenames[0]}", f"target {show(path)} listed in {role_file} is neither in the "
                 "bundle nor already on the appliance", "write a bundle that includes it (not incremental)")


def wanted_targets(verified: VerifiedRepository) -> dict[str, tuple[int, list[str]]]:
    """The target files to copy from the bundle: "<repo>/targets/<rel>" ->
    (signed length, every hash algorithm to compute while copying)."""
    wanted: dict[str, tuple[int, list[str]]] = {}
    for e in verified.targets:
        if e.bundle_relpath is None:
            continue
        key = f"{verified.name}/targets/{e.bundle_relpath}"
        _, algorithms = wanted.get(key, (e.length, []))
        wanted[key] = (e.length, sorted(set(algorithms) | set(e.hashes)))
    return wanted


def complete_targets(verified: VerifiedRepository, fetched: dict) -> None:
    """Check each copied target's length and every listed hash; point the
    entries at the appliance's own copies."""
    refuse = _Refusal(verified.name)
    for e in verified.targets:
        if e.bundle_relpath is None:
            continue
        copy = fetched[f"{verified.name}/targets/{e.bundle_relpath}"]
        if copy.size != e.length:
            raise refuse(f"targets/{e.bundle_relpath}", f"target {show(e.path)} is {copy.size} bytes but "
                         f"{e.length} are signed", "the file was altered or truncated; get a fresh copy of the bundle")
        for algorithm, expected in e.hashes.items():
            if copy.hashes.get(algorithm) != expected:
                raise refuse(f"targets/{e.bundle_relpath}", f"target {show(e.path)}: {algorithm} hash does not "
                             "match the signed metadata", "the file was altered; get a fresh copy of the bundle")
        e.source = copy.path


def _versions(trusted: TrustedState) -> dict[str, int]:
    out = {"root": trusted.root_version}
    for role, data in trusted.roles.items():
        try:
            out[role] = Metadata.from_bytes(data).signed.version
        except Exception:  # noqa: BLE001 - trusted copies were verified on import
            continue
    return out


def _target_paths(trusted: TrustedState) -> set[str]:
    paths: set[str] = set()
    for role, data in trusted.roles.items():
        if role in ("timestamp", "snapshot"):
            continue
        try:
            paths.update(Metadata[Targets].from_bytes(data).signed.targets)
        except Exception:  # noqa: BLE001
            continue
    return paths


def _unchanged(name, trusted, before, targets_before) -> VerifiedRepository:
    return VerifiedRepository(
        name=name, unchanged=True, metadata={}, current={}, targets=[], versions_before=before,
        versions_after=dict(before), targets_before=targets_before, targets_after=set(targets_before), roles=[],
    )
