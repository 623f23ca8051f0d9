"""Verify a repository in a bundle exactly as a TUF client would.

The starting point is always what the appliance already trusts (or, for
``airlock-sign verify``, the pinned root), never what the bundle says about
itself.  The checks are python-tuf's own client code (its trusted metadata
set), driven in the client's order, one step per role as python-tuf's
``ngclient.Updater`` does (``_load_root``, ``_load_timestamp``, ...):

1. the root chain, one version at a time;
2. the timestamp (the trusted one first, for rollback protection);
3. the snapshot;
4. top-level targets, then *every* delegated role in the graph, not only
   those on the way to some target (depth first; a cycle is refused); a
   role the snapshot does not list is *unavailable*, as it is to a client,
   and nothing below it is loaded;
5. every listed target path is safe; every target a client's lookup finds
   (:mod:`signing.lookup`) has its file, length and (once copied,
   :mod:`signing._verify_targets`) every listed hash checked.  A target no
   client would fetch through the role listing it (outside its delegated
   paths, behind an unavailable role) is skipped and reported, not served.

When the bundle holds nothing newer (:func:`verify_repository` returns
``unchanged``), what is already served is still checked as a client would
at ``now``: an expired timestamp, snapshot or top-level targets is named in
:attr:`VerifiedRepository.stale`.

Every limit is in :class:`VerifierLimits`, passed in.  Metadata bytes are
kept as read, so that what is published is byte for byte what the vendor
signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from signing._verify_targets import (  # noqa: F401 - re-exported: the verifier's vocabulary
    SkippedTarget,
    TargetEntry,
    TargetLookup,
    check_target_files,
    complete_targets,
    custom_of,
    wanted_targets,
)
from signing.exceptions import UnsafeNameError, VerificationError
from signing.lookup import CLIENT_MAX_DELEGATIONS, resolve_targets, targets_roles
from signing.paths import check_delegated_role_name, role_filename
from signing.trust import (  # noqa: F401 - re-exported: the verifier's vocabulary
    MAX_LENGTH,
    MetadataLookup,
    Refusal,
    RoleSummary,
    TrustedState,
    describe_role,
    refuse_duplicate_key_values,
    refuse_duplicate_root_keys,
    root_versions,
    same_signed_content,
    trusted_state_from,
    valid_signers,
    when,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierLimits:
    """What one repository of a bundle may make the verifier do; the names
    and defaults follow python-tuf's ``UpdaterConfig``."""

    max_root_rotations: int = 256  # root versions one bundle may add, as ngclient
    max_delegations: int = 10_000  # (delegator, role) edges walked in one repository
    client_max_delegations: int = CLIENT_MAX_DELEGATIONS  # roles one client lookup visits, as ngclient
    root_max_length: int = MAX_LENGTH["root"]  # bytes
    timestamp_max_length: int = MAX_LENGTH["timestamp"]  # bytes
    snapshot_max_length: int = MAX_LENGTH["snapshot"]  # bytes, when the timestamp lists no length
    targets_max_length: int = MAX_LENGTH["targets"]  # bytes per targets role, when the snapshot lists none


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
    skipped: list[SkippedTarget] = field(default_factory=list)  # listed, but no client fetches them there
    unavailable_roles: dict[str, str] = field(default_factory=dict)  # delegated role -> why a client cannot load it
    notes: list[str] = field(default_factory=list)  # what a security officer should know, one line each
    stale: str | None = None  # unchanged, but what is served fails a client's refresh: which file, since when

    @property
    def targets_added(self) -> list[str]:
        return sorted(self.targets_after - self.targets_before)

    @property
    def targets_removed(self) -> list[str]:
        return sorted(self.targets_before - self.targets_after)

    @property
    def bytes_to_publish(self) -> int:
        return sum(t.length for t in self.targets if t.source is not None)


def verify_repository(
    name: str,
    trusted: TrustedState,
    bundle_metadata: MetadataLookup,
    store_metadata: MetadataLookup,
    bundle_target: TargetLookup,
    store_target: TargetLookup,
    *,
    now: datetime | None = None,
    limits: VerifierLimits = VerifierLimits(),
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
    verifier = _RepositoryVerifier(name, trusted, bundle_metadata, store_metadata,
                                   now=now or datetime.now(UTC), limits=limits)
    verifier.load_root()
    if verifier.load_timestamp() and verifier.new_roots == 0:
        return verifier.unchanged()
    verifier.load_snapshot()
    verifier.load_targets()
    entries, skipped = check_target_files(verifier.refuse, {**verifier.expired, **verifier.loaded},
                                          verifier.unavailable, bundle_target,
                                          store_target, absent_targets_held=absent_targets_held,
                                          max_delegations=limits.client_max_delegations)
    return verifier.result(entries, skipped)


class _RepositoryVerifier:
    """The state of one verification, advanced one role at a time: python-
    tuf's trusted set, the files the new tree adds, the roles loaded."""

    def __init__(self, name: str, trusted: TrustedState, bundle_metadata: MetadataLookup,
                 store_metadata: MetadataLookup, *, now: datetime, limits: VerifierLimits):
        self.name = name
        self.trusted = trusted
        self.bundle_metadata = bundle_metadata
        self.store_metadata = store_metadata
        self.now = now
        self.limits = limits
        self.refuse = Refusal(name)
        self.added: dict[str, bytes] = {}  # files the new tree adds, name -> bytes
        self.new_roots = 0
        self.loaded: dict[str, Metadata] = {}  # targets roles, name -> verified metadata
        self.unavailable: dict[str, str] = {}  # delegated role -> why a client cannot load it
        self.expired_files: dict[str, tuple[str, int]] = {}  # expired delegated role -> (file, version), served
        self.expired: dict[str, Metadata] = {}  # expired delegated role -> its metadata, for the report
        self.notes: list[str] = []
        self.summaries: list[RoleSummary] = []
        self.timestamp_data = b""  # the timestamp in force, as read
        self.snapshot_file = ""  # its versioned name
        try:
            self.tset = TrustedMetadataSet(trusted.root, EnvelopeType.METADATA)
        except tuf_exceptions.RepositoryError as exc:
            raise self.refuse("root.json", f"the trusted root does not verify ({exc})",
                              "re-pin the vendor's root") from None
        self.tset.reference_time = now
        self.trusted_root_version = self.tset.root.version
        refuse_duplicate_root_keys(self.refuse, f"{self.tset.root.version}.root.json", self.tset.root)

    # reading files --------------------------------------------------------
    def fetch(self, filename: str, cap: int) -> bytes | None:
        """A metadata file from the bundle, else from the store, else None; a
        file the bundle brings that the store lacks is recorded in
        :attr:`added`."""
        data = self.bundle_metadata(filename, cap)
        known = self.store_metadata(filename, cap)
        if data is not None and known is not None and data != known:
            if not same_signed_content(data, known):
                raise self.refuse(filename, "differs from the file of the same name the appliance already serves "
                                  "(a version number was reused)", "the vendor must publish a new version")
            data = None  # laid out differently, same signed content: keep serving ours
        if data is None:
            return known
        if known is None:
            self.added[filename] = data
        return data

    def need(self, filename: str, cap: int) -> bytes:
        """:meth:`fetch` for a file the verification cannot do without."""
        data = self.fetch(filename, cap)
        if data is None:
            raise self.refuse(filename, "missing from the bundle", "the bundle must hold every metadata file the "
                              "snapshot lists; write a complete bundle")
        return data

    # 1. root --------------------------------------------------------------
    def load_root(self) -> None:
        """Each ``N.root.json`` after the trusted version while present; then
        the final root must allow consistent snapshots and not be expired."""
        tset = self.tset
        version = tset.root.version + 1
        while (data := self.fetch(f"{version}.root.json", self.limits.root_max_length)) is not None:
            filename = f"{version}.root.json"
            if self.new_roots >= self.limits.max_root_rotations:
                raise self.refuse(filename, f"more than {self.limits.max_root_rotations} root versions in one bundle")
            try:
                tset.update_root(data)
            except tuf_exceptions.RepositoryError as exc:
                raise self.refuse.from_tuf(filename, exc) from None
            except Exception as exc:  # noqa: BLE001 - malformed JSON and friends
                raise self.refuse(filename, f"not valid TUF root metadata ({exc})") from None
            refuse_duplicate_root_keys(self.refuse, filename, tset.root)
            self.new_roots += 1
            version += 1
        root_file = f"{tset.root.version}.root.json"
        if not tset.root.consistent_snapshot:
            raise self.refuse(root_file, "root disables consistent snapshots, which Airlock requires to publish "
                              "atomically", "the vendor must set consistent_snapshot true in root")
        if tset.root.is_expired(self.now):
            raise self.refuse(root_file, f"the final root expired on {tset.root.expires:%Y-%m-%d %H:%M} UTC",
                              "ask the vendor for a bundle with a new root version")

    # 2. timestamp ---------------------------------------------------------
    def load_timestamp(self) -> bool:
        """The trusted timestamp first (rollback protection), then the
        bundle's; True when the bundle's is the one already trusted."""
        tset = self.tset
        if "timestamp" in self.trusted.roles:
            try:
                tset.update_timestamp(self.trusted.roles["timestamp"])
            except tuf_exceptions.RepositoryError as exc:
                logger.debug("trusted timestamp not valid as final: %s", exc)
        data = self.bundle_metadata("timestamp.json", self.limits.timestamp_max_length)
        if data is None:
            raise self.refuse("timestamp.json", "missing from the bundle", "write a complete bundle")
        unchanged = False
        try:
            tset.update_timestamp(data)
        except tuf_exceptions.EqualVersionNumberError:
            known = self.trusted.roles.get("timestamp") or b""
            if data != known and not same_signed_content(data, known):
                # a client keeps its trusted timestamp and carries on: nothing is newer
                self.notes.append(f"timestamp.json: the bundle's timestamp version {tset.timestamp.version} differs "
                                  f"from the trusted timestamp version {tset.timestamp.version} (the vendor re-signed "
                                  "it with other content); kept the trusted one, as a client does: nothing newer")
            unchanged = True
        except tuf_exceptions.RepositoryError as exc:
            raise self._from_tuf("timestamp.json", exc, data) from None
        except Exception as exc:  # noqa: BLE001
            raise self.refuse("timestamp.json", f"not valid TUF timestamp metadata ({exc})") from None
        if unchanged and self.new_roots and tset.timestamp.is_expired(self.now):
            raise self.refuse("timestamp.json", f"expired on {when(tset.timestamp.expires)}",
                              "ask the vendor to re-sign it with a later expiry")
        if not unchanged:
            self.added["timestamp.json"] = data
            self.timestamp_data = data
        else:
            self.timestamp_data = self.trusted.roles.get("timestamp") or data
        return unchanged

    def unchanged(self) -> VerifiedRepository:
        """Nothing newer: what a client's refresh of the served repository
        meets now (an expired snapshot or top-level targets), named."""
        out = _unchanged(self.name, self.trusted)
        out.notes = list(self.notes)
        snap = self.trusted.roles.get("snapshot")
        if self.tset.timestamp.is_expired(self.now):
            out.stale = f"timestamp.json expired on {when(self.tset.timestamp.expires)}"
        elif snap is not None:
            snapshot = Metadata.from_bytes(snap).signed
            if snapshot.is_expired(self.now):
                out.stale = f"{snapshot.version}.snapshot.json expired on {when(snapshot.expires)}"
            elif "targets" in self.trusted.roles:
                top = Metadata.from_bytes(self.trusted.roles["targets"]).signed
                if top.is_expired(self.now):
                    out.stale = f"{top.version}.targets.json expired on {when(top.expires)}"
        return out

    # 3. snapshot ----------------------------------------------------------
    def load_snapshot(self) -> None:
        """The version the timestamp names: the trusted copy if it is still
        valid as final, else the bundle's."""
        tset = self.tset
        meta = tset.timestamp.snapshot_meta
        self.snapshot_file = filename = f"{meta.version}.snapshot.json"
        cap = meta.length or self.limits.snapshot_max_length
        trusted_copy = self.trusted.roles.get("snapshot")
        if trusted_copy is not None and _load_trusted_copy(tset.update_snapshot, trusted_copy, trusted=True):
            data = trusted_copy
            self.fetch(filename, cap)
        else:
            data = self.need(filename, cap)
            self._apply(filename, data, lambda: tset.update_snapshot(data))
        root_data = self.fetch(f"{tset.root.version}.root.json", self.limits.root_max_length) or self.trusted.root
        for role, role_data in (("root", root_data), ("timestamp", self.timestamp_data), ("snapshot", data)):
            self.summaries.append(describe_role(role, Metadata.from_bytes(role_data), tset.root, "root"))

    # 4. targets and delegations -------------------------------------------
    def load_targets(self) -> None:
        """Top-level targets, then every role in the delegation graph, depth
        first with each role's chain of delegators (to name a cycle)."""
        top = self._load_targets_role("targets", "root")
        assert top is not None, "top-level targets is always in the snapshot"
        self.loaded["targets"] = top
        self.summaries.append(describe_role("targets", top, self.tset.root, "root"))
        edges: set[tuple[str, str]] = set()
        stack: list[tuple[str, Metadata, tuple[str, ...]]] = [("targets", top, ("targets",))]
        while stack:
            parent_name, parent_md, chain = stack.pop()
            for role_name, _role in reversed(self._delegations_of(parent_name, parent_md)):
                parent_file = role_filename(parent_md.signed.version, parent_name)
                try:
                    check_delegated_role_name(role_name)
                except UnsafeNameError as exc:
                    raise self.refuse(parent_file, str(exc)) from None
                if role_name in chain:
                    cycle = " -> ".join((*chain[chain.index(role_name):], role_name))
                    raise self.refuse(parent_file, f"delegation cycle {cycle}",
                                      "the vendor must remove the delegation that points back")
                if (parent_name, role_name) in edges:
                    continue
                edges.add((parent_name, role_name))
                if len(edges) > self.limits.max_delegations:
                    raise self.refuse(parent_file, f"more than {self.limits.max_delegations} delegations in the "
                                      "repository", "the vendor must use fewer roles (or succinct hash bins)")
                md = self._load_targets_role(role_name, parent_name)
                if md is None:
                    self.unavailable[role_name] = "is not listed in the snapshot"
                    continue
                self.summaries.append(describe_role(role_name, md, parent_md.signed, parent_name))
                if role_name in self.unavailable:
                    continue  # expired: verified otherwise, published, but nothing below it is loaded
                if role_name not in self.loaded:
                    self.loaded[role_name] = md
                    stack.append((role_name, md, (*chain, role_name)))

    def _delegations_of(self, parent_name: str, parent_md: Metadata) -> list[tuple[str, object]]:
        """(role name, delegation) for each role ``parent_md`` delegates to;
        one key listed under two key ids is refused."""
        delegations = parent_md.signed.delegations
        if delegations is None:
            return []
        parent_file = role_filename(parent_md.signed.version, parent_name)
        if delegations.roles is not None:
            for r in delegations.roles.values():
                refuse_duplicate_key_values(self.refuse, parent_file, r.name, r.keyids, delegations.keys)
            return [(r.name, r) for r in delegations.roles.values()]
        succinct = delegations.succinct_roles
        refuse_duplicate_key_values(self.refuse, parent_file, "succinct roles", succinct.keyids, delegations.keys)
        return [(n, succinct) for n in succinct.get_roles()]

    def _load_targets_role(self, role: str, delegator: str) -> Metadata | None:
        """The version of ``role`` the snapshot names: the trusted copy if it
        is still valid as final, else the bundle's.  None when the snapshot
        does not list it: a client's lookup fails there, and only there."""
        tset = self.tset
        meta = tset.snapshot.meta.get(f"{role}.json")
        if meta is None:
            if role == "targets":
                raise self.refuse(f"{tset.snapshot.version}.snapshot.json", "does not list targets.json")
            return None
        filename = role_filename(meta.version, role)
        cap = meta.length or self.limits.targets_max_length
        local = self.trusted.roles.get(role)
        if local is not None:
            try:
                tset.update_delegated_targets(local, role, delegator)
                self.fetch(filename, cap)
                return Metadata.from_bytes(local)
            except tuf_exceptions.RepositoryError as exc:
                logger.debug("trusted %s not valid as final: %s", role, exc)
        data = self.need(filename, cap)
        try:
            self._apply(filename, data, lambda: tset.update_delegated_targets(data, role, delegator),
                        pass_expired=role != "targets")
        except tuf_exceptions.ExpiredMetadataError:
            # python-tuf checks expiry last: signatures and version are good.  A client's refresh
            # still works; only its lookups through this role fail, so only those targets are out.
            md = Metadata.from_bytes(data)
            self.unavailable[role] = f"expired on {when(md.signed.expires)}"
            self.expired_files[role] = (filename, md.signed.version)
            self.expired[role] = md
            return md
        return Metadata.from_bytes(data)

    # outcome and errors ---------------------------------------------------
    def result(self, entries: list[TargetEntry], skipped: list[SkippedTarget]) -> VerifiedRepository:
        tset = self.tset
        after = {"root": tset.root.version, "timestamp": tset.timestamp.version, "snapshot": tset.snapshot.version}
        current = {"root": f"{tset.root.version}.root.json", "timestamp": "timestamp.json",
                   "snapshot": self.snapshot_file}
        for role_name, md in self.loaded.items():
            after[role_name] = md.signed.version
            current[role_name] = role_filename(md.signed.version, role_name)
        for role_name, (filename, version) in self.expired_files.items():
            after[role_name], current[role_name] = version, filename
        return VerifiedRepository(
            name=self.name, unchanged=False, metadata=self.added, current=current, targets=entries,
            versions_before=_versions(self.trusted), versions_after=after,
            targets_before=_target_paths(self.trusted), targets_after={e.path for e in entries},
            roles=self.summaries, skipped=skipped, unavailable_roles=dict(self.unavailable), notes=list(self.notes),
        )

    def _apply(self, filename: str, data: bytes, step: Callable[[], object], *, pass_expired: bool = False) -> None:
        """Run python-tuf's ``step`` on ``data``; its refusal, translated.
        With ``pass_expired``, an expired file's error is raised as it is."""
        try:
            step()
        except tuf_exceptions.ExpiredMetadataError as exc:
            if pass_expired:
                raise
            raise self._from_tuf(filename, exc, data) from None
        except tuf_exceptions.RepositoryError as exc:
            raise self._from_tuf(filename, exc, data) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.refuse(filename, f"not valid TUF metadata ({type(exc).__name__}: {exc})") from None

    def _from_tuf(self, filename: str, exc: Exception, data: bytes) -> VerificationError:
        """python-tuf's refusal of ``data`` (the file ``filename``), saying
        when it expired, or that the bundle predates the trusted root."""
        expires = _expiry(data) if isinstance(exc, tuf_exceptions.ExpiredMetadataError) else None
        what, advice = Refusal.explain(exc, expires=expires)
        if self.new_roots == 0 and isinstance(exc, (tuf_exceptions.UnsignedMetadataError,
                                                     tuf_exceptions.BadVersionNumberError)):
            older = self._newest_older_root()
            if older is not None:
                trusted = self.trusted_root_version
                what = (f"the bundle's newest root is version {older}, older than the trusted root version "
                        f"{trusted}: the bundle was made before the vendor's last root change ({what})")
                advice = (f"ask the vendor for a bundle from their current repository, with every root version "
                          f"up to {trusted} or later")
        return self.refuse(filename, what, advice)

    def _newest_older_root(self) -> int | None:
        """The newest root version the bundle holds when it holds only roots
        older than the trusted one; None otherwise (or when it holds none)."""
        cap = self.limits.root_max_length
        lowest = max(0, self.trusted_root_version - 1 - self.limits.max_root_rotations)
        try:
            if self.bundle_metadata(f"{self.trusted_root_version}.root.json", cap) is not None:
                return None
            for version in range(self.trusted_root_version - 1, lowest, -1):
                if self.bundle_metadata(f"{version}.root.json", cap) is not None:
                    return version
        except VerificationError:
            return None
        return None


def check_root_keys(name: str, filename: str, root: Root) -> None:
    """Raise :class:`VerificationError` if a root lists a key twice."""
    refuse_duplicate_root_keys(Refusal(name), filename, root)


def _expiry(data: bytes) -> datetime | None:
    try:
        return Metadata.from_bytes(data).signed.expires
    except Exception:  # noqa: BLE001 - unreadable: the refusal says so without a date
        return None


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


def _versions(trusted: TrustedState) -> dict[str, int]:
    out = {"root": trusted.root_version}
    for role, data in trusted.roles.items():
        try:
            out[role] = Metadata.from_bytes(data).signed.version
        except Exception:  # noqa: BLE001 - trusted copies were verified on import
            continue
    return out


def _target_paths(trusted: TrustedState) -> set[str]:
    """The targets a client found in the trusted state (expiry aside)."""
    try:
        roles = targets_roles(trusted)
    except Exception:  # noqa: BLE001 - trusted copies were verified on import
        return set()
    return {s.path for s in resolve_targets(roles) if s.state == "available"}


def _unchanged(name: str, trusted: TrustedState) -> VerifiedRepository:
    before = _versions(trusted)
    targets_before = _target_paths(trusted)
    return VerifiedRepository(
        name=name, unchanged=True, metadata={}, current={}, targets=[], versions_before=before,
        versions_after=dict(before), targets_before=targets_before, targets_after=set(targets_before), roles=[],
    )
