"""Verifying a whole bundle: the two passes (metadata, then the target files
it lists) around :func:`signing.verify.verify_repository`, and the report
``airlock-sign verify`` prints.  The appliance's import runs the same
:func:`verify_staged_bundle`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from signing._copy import PHASE_VERIFY, Progress
from signing.exceptions import VerificationError
from signing.paths import check_repo_name, show
from signing.verify import (
    MetadataLookup,
    TargetLookup,
    TrustedState,
    VerifiedRepository,
    VerifierLimits,
    complete_targets,
    verify_repository,
    wanted_targets,
)


def bundle_lookups(staged, repo: str) -> tuple[MetadataLookup, TargetLookup]:
    """Lookups over a staged bundle's repository ``repo``: metadata bytes from
    the appliance's copy (duplicate JSON keys refused), target sizes from the
    catalogue."""

    def metadata(filename: str, cap: int) -> bytes | None:
        if "/" in filename:
            return None
        f = staged.metadata_file(repo, filename)
        if f is None:
            return None
        if f.size > cap:
            raise VerificationError(f"repository {show(repo)}: {filename}: {f.size} bytes is over the "
                                    f"{cap}-byte limit for this file; refused")
        with open(f.path, "rb") as fh:
            data = fh.read(cap + 1)
        _refuse_duplicate_keys(repo, filename, data)
        return data

    def target(relpath: str) -> int | None:
        return staged.target_size(repo, relpath)

    return metadata, target


def _refuse_duplicate_keys(repo: str, filename: str, data: bytes) -> None:
    """JSON with a key twice means different things to different parsers;
    python's keeps the last, others the first: refuse it outright."""

    def pairs(items):
        seen = set()
        for key, _ in items:
            if key in seen:
                raise VerificationError(f"repository {show(repo)}: {filename}: the JSON key {show(key)} appears "
                                        "twice in one object; refused, ask the vendor for a correctly signed bundle")
            seen.add(key)
        return dict(items)

    try:
        json.loads(data, object_pairs_hook=pairs)
    except ValueError:
        return  # not JSON at all: TUF's parser says so with its own message


def _nothing(*_args) -> None:
    return None


@dataclass
class BundleReport:
    """What ``airlock-sign verify`` found: one entry per repository."""

    digest: str
    repositories: list[VerifiedRepository]

    def to_dict(self) -> dict:
        repositories: list[dict[str, Any]] = []
        out = {"bundle_digest": self.digest, "repositories": repositories}
        for repo in self.repositories:
            repositories.append({
                "name": repo.name,
                "versions": repo.versions_after,
                "roles": [
                    {"name": r.name, "version": r.version, "expires": r.expires.isoformat(),
                     "threshold": r.threshold, "keyids": r.keyids, "keytypes": r.keytypes,
                     "signed_by": r.signed_by, "delegator": r.delegator, "paths": r.paths}
                    for r in repo.roles
                ],
                "targets": [
                    {"path": t.path, "length": t.length, "hashes": t.hashes, "custom": t.custom,
                     "role": t.role, "in_bundle": t.bundle_relpath is not None}
                    for t in sorted(repo.targets, key=lambda t: t.path)
                ],
                "skipped_targets": [t.to_dict() for t in repo.skipped],
                "unavailable_roles": repo.unavailable_roles,
                "notes": repo.notes,
            })
        return out

    def render(self) -> str:
        lines = [f"bundle digest sha256:{self.digest}", "verdict: OK, every check passed"]
        for repo in self.repositories:
            lines.append(f"repository {repo.name}")
            for r in repo.roles:
                where = f" delegated by {r.delegator}" if r.delegator not in (None, "root") else ""
                paths = f" paths {', '.join(r.paths)}" if r.paths else ""
                lines.append(f"  {r.name:<12} v{r.version:<5} expires {r.expires:%Y-%m-%d} "
                             f"signed by {len(r.signed_by)} of {len(r.keyids)} keys (threshold {r.threshold})"
                             f"{where}{paths}")
            lines.append(f"  targets: {len(repo.targets)}")
            for t in sorted(repo.targets, key=lambda t: t.path):
                custom = f" {t.custom}" if t.custom else ""
                absent = "" if t.bundle_relpath is not None else "  (not in bundle: the appliance must hold it)"
                lines.append(f"    {show(t.path)[1:-1]}  {t.length} bytes{custom}{absent}")
            for role, why in sorted(repo.unavailable_roles.items()):
                lines.append(f"  role {show(role)} is unavailable: it {why}; targets behind it are not served")
            for skipped in repo.skipped:
                lines.append(f"  {skipped.state} target {show(skipped.path)} listed by {show(skipped.role)}: "
                             f"{skipped.why}")
            lines.extend(f"  {note}" for note in repo.notes)
        return "\n".join(lines)


# Where a repository's trust starts: (trusted state, store metadata lookup,
# store target lookup).  The appliance reads its published tree; the vendor's
# verifier starts from a pinned root and an empty store.
TrustSource = Callable[[str], "tuple[TrustedState, MetadataLookup, Callable[[str], object]]"]


def verify_staged_bundle(staged, trust_for: TrustSource, *, now: datetime | None = None,
                         progress: Progress | None = None, before_copy: Callable[[int], None] | None = None,
                         incremental: bool = False, limits: VerifierLimits = VerifierLimits(),
                         ) -> list[VerifiedRepository]:
    """Verify every repository of a scanned bundle, then copy and check the
    target files the verified metadata lists (and only those).

    ``before_copy(bytes)`` runs between the two, e.g. to check free space
    against the signed lengths.  ``incremental`` accepts target files absent
    from the bundle (for ``airlock-sign verify``, which cannot look at the
    appliance); every target present is checked all the same.  ``limits``
    caps what each repository may make the verifier do.  Raises
    :class:`AirlockError` (one line).
    """
    if progress is not None:
        progress(0, None, staged.files_copied, phase=PHASE_VERIFY)
    verified = []
    for name in staged.repositories:
        trusted, store_meta, store_target = trust_for(name)
        meta, target = bundle_lookups(staged, name)
        verified.append(verify_repository(name, trusted, meta, store_meta, target, store_target, now=now,
                                          limits=limits, absent_targets_held=incremental))
    wanted: dict[str, tuple[int, list[str]]] = {}
    for v in verified:
        if not v.unchanged:
            wanted.update(wanted_targets(v))
    if before_copy is not None:
        before_copy(sum(length for length, _ in wanted.values()))
    staged.fetch_targets(wanted, progress=progress)
    for v in verified:
        if not v.unchanged:
            complete_targets(v, staged.fetched)
    return verified


def verify_bundle(bundle_path: Path, trusted_roots: dict[str, bytes], *, now: datetime | None = None,
                  incremental: bool = False, limits: VerifierLimits = VerifierLimits()) -> BundleReport:
    """Verify a bundle on its own, from pinned roots: ``airlock-sign verify``.

    Runs the appliance's import verification with nothing trusted but each
    repository's root; the bundle is staged into a temporary folder.
    """
    import tempfile

    from signing.bundle import scan_bundle

    with tempfile.TemporaryDirectory(prefix="airlock-verify-") as tmp:
        staged = scan_bundle(Path(bundle_path), Path(tmp) / "staging")
        for name in staged.repositories:
            check_repo_name(name)  # the appliance could never pin it
        unknown = [r for r in staged.repositories if r not in trusted_roots]
        if unknown:
            raise VerificationError(f"the bundle holds repository {show(unknown[0])} but no root was given "
                                    f"for it: pass --root {unknown[0]}=ROOT.json")

        def trust_for(name: str):
            return TrustedState(root=trusted_roots[name]), _nothing, _nothing

        results = verify_staged_bundle(staged, trust_for, now=now, incremental=incremental, limits=limits)
        return BundleReport(digest=staged.digest, repositories=results)
