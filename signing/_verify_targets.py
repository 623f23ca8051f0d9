"""The last step of verification: the target files every verified role lists.

First, from the metadata alone (:func:`check_target_files`): each listed
path is safe; each target a client's lookup finds in the role listing it
(:mod:`signing.lookup`) has hash algorithms that can be checked and its file
in the bundle (with the signed length), already on the appliance, or (an
incremental bundle checked by ``airlock-sign verify``) allowed to be absent.
The other listed targets are skipped, each with the reason.  Then, once the bundle's
copies are staged (:func:`wanted_targets`, :func:`complete_targets`), every
copy's length and every listed hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import Metadata, TargetFile

from signing._copy import _new_hash
from signing.exceptions import UnsafeNameError
from signing.lookup import AVAILABLE, CLIENT_MAX_DELEGATIONS, UNAVAILABLE, resolve_targets
from signing.paths import check_target_path, role_filename, show
from signing.trust import Refusal

# lookup(relpath under targets/) -> the file's size in bytes, or None when absent
TargetLookup = Callable[[str], "int | object | None"]


def custom_of(target_file: TargetFile) -> dict:
    """A target's custom metadata as a dict: ``{}`` when the target has none
    (TUF makes ``custom`` optional, and python-tuf then gives None) or when
    it is not a JSON object."""
    custom = target_file.custom
    return dict(custom) if isinstance(custom, dict) else {}


@dataclass
class TargetEntry:
    """A target listed by a verified role, and where its bytes are."""

    path: str
    length: int  # bytes, as signed
    hashes: dict[str, str]
    custom: dict
    role: str
    source: Path | None  # staged copy to publish, once copied and checked; None when the store holds it
    filenames: list[str]  # hash-prefixed names under targets/, one per hash
    bundle_relpath: str | None = None  # the bundle's file to copy; None when the store holds it


@dataclass(frozen=True)
class SkippedTarget:
    """A target a role lists that no client would fetch through it: accepted
    with the repository, but neither served, offered nor required."""

    path: str
    role: str
    state: str  # "ignored" (the client never reaches this entry) | "unavailable" (its lookup fails)
    why: str
    # unavailable only: its hash-prefixed names under targets/, so that copies the appliance holds are
    # kept for when the role is available again (a re-signed role may come in an incremental bundle)
    filenames: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"path": self.path, "role": self.role, "state": self.state, "why": self.why}


def check_target_files(refuse: Refusal, loaded: dict[str, Metadata], unavailable: dict[str, str],
                       bundle_target: TargetLookup, store_target: TargetLookup, *,
                       absent_targets_held: bool, max_delegations: int = CLIENT_MAX_DELEGATIONS,
                       ) -> tuple[list[TargetEntry], list[SkippedTarget]]:
    """Every target of every role in ``loaded`` (role -> verified metadata)
    that a client's lookup finds in that role, checked; and those it does
    not (:mod:`signing.lookup`), with why.  ``unavailable`` names the
    delegated roles a client cannot load (role -> why).  Every listed path
    must be safe, found or not."""
    for role_name, md in loaded.items():
        for path in md.signed.targets:
            try:
                check_target_path(path)
            except UnsafeNameError as exc:
                raise refuse(role_filename(md.signed.version, role_name), str(exc)) from None
    roles = {name: md.signed for name, md in loaded.items()}
    entries: list[TargetEntry] = []
    skipped: list[SkippedTarget] = []
    for status in resolve_targets(roles, unavailable=unavailable, max_delegations=max_delegations):
        if status.state != AVAILABLE:
            names = _safe_filenames(status.path, status.target) if status.state == UNAVAILABLE else ()
            skipped.append(SkippedTarget(status.path, status.role, status.state, status.why, names))
            continue
        role_file = role_filename(loaded[status.role].signed.version, status.role)
        entries.append(_check_target(refuse, role_file, status.role, status.path, status.target, bundle_target,
                                     store_target, absent_targets_held))
    return entries, skipped


def _safe_filenames(path: str, tf: TargetFile) -> tuple[str, ...]:
    """The hash-prefixed names of a target that are safe paths."""
    folder, _, base = path.rpartition("/")
    prefix = f"{folder}/" if folder else ""
    out = []
    for digest in tf.hashes.values():
        try:
            out.append(check_target_path(f"{prefix}{digest}.{base}"))
        except UnsafeNameError:
            continue
    return tuple(out)


def _check_target(refuse: Refusal, role_file: str, role_name: str, path: str, tf: TargetFile,
                  bundle_target: TargetLookup, store_target: TargetLookup, absent_targets_held: bool) -> TargetEntry:
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


def wanted_targets(verified) -> dict[str, tuple[int, list[str]]]:
    """The target files to copy from the bundle for a VerifiedRepository:
    "<repo>/targets/<rel>" -> (signed length, every hash algorithm to
    compute while copying)."""
    wanted: dict[str, tuple[int, list[str]]] = {}
    for e in verified.targets:
        if e.bundle_relpath is None:
            continue
        key = f"{verified.name}/targets/{e.bundle_relpath}"
        _, algorithms = wanted.get(key, (e.length, []))
        wanted[key] = (e.length, sorted(set(algorithms) | set(e.hashes)))
    return wanted


def complete_targets(verified, fetched: dict) -> None:
    """Check each copied target's length and every listed hash; point the
    entries of a VerifiedRepository at the appliance's own copies."""
    refuse = Refusal(verified.name)
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
