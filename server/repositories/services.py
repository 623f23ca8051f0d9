"""Pinning repositories, removing a pin, and reading their trust state: one
service for the CLI, the API and the console."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root, Targets

from server import audit
from server.clock import now_iso, utcnow
from server.imports.services import import_history, imported_into
from server.imports.services import latest_id as latest_import_id
from server.models import database
from server.repositories.models import Repository
from server.repositories.store import RepositoryStore
from server.settings import Settings
from signing import paths
from signing.exceptions import AirlockError, RepositoryNameError, VerificationError
from signing.lookup import AVAILABLE, IGNORED, refresh_problem, resolve_targets, targets_roles, unavailable_roles
from signing.trust import describe_role
from signing.verify import MAX_LENGTH, check_root_keys, custom_of

logger = logging.getLogger(__name__)


class RepositoryError(AirlockError):
    """A repository cannot be pinned, found or read."""


def check_repo_name(name: str) -> str:
    try:  # the one rule, shared with airlock-sign
        return paths.check_repo_name(name)
    except RepositoryNameError as exc:
        raise RepositoryError(str(exc)) from None


@dataclass
class RepositoryInfo:
    name: str
    root_fingerprint: str
    pinned_root_version: int
    added_at: str
    added_by: str


@dataclass
class RoleState:
    name: str
    version: int
    expires: str
    days_left: int
    keyids: list[str]
    keytypes: dict[str, str]
    threshold: int
    signed_by: list[str]
    delegator: str | None = None
    paths: list[str] | None = None


@dataclass
class TrustReport:
    """Everything a security officer audits for one repository."""

    repository: RepositoryInfo
    root_versions: list[int]
    roles: list[RoleState]
    targets: list[dict]  # what a client finds now: path, length, hashes, custom, role
    imports: list[dict] = field(default_factory=list)
    unavailable: list[dict] = field(default_factory=list)  # listed targets whose lookup fails now: path, role, why
    ignored: list[dict] = field(default_factory=list)  # listed targets a client never finds there: path, role, why
    unavailable_roles: dict[str, str] = field(default_factory=dict)  # delegated role -> why a client cannot load it
    refresh_problem: str | None = None  # why a client's refresh fails now (an expired timestamp or snapshot)

    def to_dict(self) -> dict:
        return asdict(self)


def pin_repository(settings: Settings, name: str, root_path: Path, fingerprint: str, operator: str) -> RepositoryInfo:
    """Pin a vendor's root after checking its fingerprint, and publish it."""
    check_repo_name(name)
    fingerprint = fingerprint.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise RepositoryError("--fingerprint must be the 64 hex digits of the root file's SHA-256")
    try:
        data = root_path.read_bytes()[: MAX_LENGTH["root"] + 1]
    except OSError as exc:
        raise RepositoryError(f"cannot read {root_path}: {exc.strerror}") from None
    if len(data) > MAX_LENGTH["root"]:
        raise RepositoryError(f"{root_path} is larger than {MAX_LENGTH['root']} bytes: not a root file")
    actual = hashlib.sha256(data).hexdigest()
    if actual != fingerprint:
        raise RepositoryError(f"fingerprint mismatch: {root_path} has SHA-256 {actual}, not {fingerprint}; "
                              "check the file you were given against the vendor's fingerprint out of band")
    try:
        md = Metadata[Root].from_bytes(data)
        if md.signed.type != "root":
            raise VerificationError("not a root metadata file")
        md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
    except (tuf_exceptions.RepositoryError, ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"{root_path}: not a validly self-signed TUF root ({exc}); nothing pinned") from None
    check_root_keys(name, root_path.name, md.signed)
    if not md.signed.consistent_snapshot:
        raise VerificationError(f"{root_path}: root disables consistent snapshots, which Airlock requires; "
                                "nothing pinned")
    with database.atomic("IMMEDIATE"):
        if Repository.get_or_none(Repository.name == name) is not None:
            raise RepositoryError(f"repository {name!r} is already pinned; a new root arrives by import")
        store = RepositoryStore(settings.public_dir, name)
        if store.root.exists():
            raise RepositoryError(f"{store.root} exists but is not in the database; move it away first")
        row = Repository.create(name=name, root_fingerprint=actual, pinned_root_version=md.signed.version,
                                added_at=now_iso(), added_by=operator, history_after=latest_import_id())
        store.create(data, md.signed.version)
        audit.record(operator, "repository.pin", name, {"root_version": md.signed.version, "root_sha256": actual})
    return _info(row)


def _history_after(name: str) -> int:
    row = Repository.get_or_none(Repository.name == name)
    return row.history_after if row is not None else 0


def _info(row: Repository) -> RepositoryInfo:
    return RepositoryInfo(row.name, row.root_fingerprint, row.pinned_root_version, row.added_at, row.added_by)


def get_repository(name: str) -> RepositoryInfo:
    row = Repository.get_or_none(Repository.name == name)
    if row is None:
        raise RepositoryError(f"no repository named {name!r} is pinned: see `airlock repo list`, or pin it "
                              "with `airlock repo add`")
    return _info(row)


def list_repositories() -> list[RepositoryInfo]:
    return [_info(r) for r in Repository.select().order_by(Repository.name)]


def is_pinned(name: str) -> bool:
    return Repository.get_or_none(Repository.name == name) is not None


@dataclass
class RemovedRepository:
    name: str
    imports: int  # accepted imports that had published into it
    archived_to: str | None  # where its published tree went; None when it held only the pinned root


def archive_dir(settings: Settings) -> Path:
    """Where removed repositories' published trees are kept."""
    return settings.home / "archive" / "repos"


def remove_repository(settings: Settings, name: str, operator: str, *, archive: bool = False) -> RemovedRepository:
    """Remove a pin.  Refused while anything was imported into the repository,
    unless ``archive``: then its published tree is moved under
    :func:`archive_dir` (never deleted) and devices stop finding it at
    ``/repos/NAME/``.  A pin nothing was imported into loses its tree, which
    holds only the root the security officer pinned.  The caller holds the
    import lock, so no import publishes meanwhile."""
    info = get_repository(name)
    store = RepositoryStore(settings.public_dir, name)
    imports = imported_into(name, after=_history_after(name))
    published = store.exists() and any(n != "root.json" and not n.endswith(".root.json")
                                       for n in store.metadata_names())
    if (imports or published) and not archive:
        raise RepositoryError(
            f"repository {name} holds imported metadata ({imports} accepted import(s)); devices may trust it, so "
            f"it is not removed: to take it out of service anyway, run `airlock repo remove {name} --archive` "
            f"(its published tree is kept under {archive_dir(settings)}); nothing changed")
    if archive:
        from server.devices.releases import list_releases

        active = [r.id for r in list_releases() if r.repository == name]
        if active:
            raise RepositoryError(
                f"repository {name} has approved releases ({', '.join(map(str, active))}) that devices are "
                f"offered: withdraw them first with `airlock releases withdraw ID`; nothing changed")
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    moved_to = archive_dir(settings) / f"{name}-{stamp}" if archive else store.root.with_name(f".removing-{name}")
    if not archive and moved_to.exists():
        shutil.rmtree(moved_to)  # left by a removal that a crash cut short
    with database.atomic("IMMEDIATE"):
        if store.root.exists():
            moved_to.parent.mkdir(parents=True, exist_ok=True)
            if moved_to.exists():
                raise RepositoryError(f"{moved_to} exists already: move it away and remove again; nothing changed")
            try:
                os.rename(store.root, moved_to)  # one step: devices see the whole repository or none
            except OSError as exc:
                raise RepositoryError(f"cannot move {store.root} to {moved_to} ({exc.strerror}): the archive must be "
                                      f"on the same file system as {settings.public_dir}; nothing changed") from None
        try:
            Repository.delete().where(Repository.name == name).execute()
            audit.record(operator, "repository.remove", name,
                         {"root_sha256": info.root_fingerprint, "imports": imports,
                          "archived_to": str(moved_to) if archive else None})
        except BaseException:
            if moved_to.exists() and not store.root.exists():
                os.rename(moved_to, store.root)
            raise
    if not archive and moved_to.exists():
        shutil.rmtree(moved_to, ignore_errors=True)
    logger.info("repository %s removed by %s%s", name, operator, f"; tree archived to {moved_to}" if archive else "")
    return RemovedRepository(name, imports, str(moved_to) if archive else None)


def trust_report(settings: Settings, name: str, now: datetime | None = None) -> TrustReport:
    """The whole trust state of a repository, from the files it serves; its
    targets sorted as a device's client sees them at ``now``."""
    now = now or utcnow()
    report = _roles_report(settings, name, now)
    state = RepositoryStore(settings.public_dir, name).trusted_state()
    report.targets = []
    if "targets" in state.roles:
        _add_targets(report, state, now)
    return report


def _roles_report(settings: Settings, name: str, now: datetime | None = None) -> TrustReport:
    """The roles, keys and history of a repository, from the files it serves
    (with every listed target; :func:`trust_report` sorts them)."""
    info = get_repository(name)
    now = now or utcnow()
    store = RepositoryStore(settings.public_dir, name)
    state = store.trusted_state()
    root_md = Metadata[Root].from_bytes(state.root)
    roles: list[RoleState] = [_role_state("root", root_md, root_md.signed, "root", now)]
    for role in ("timestamp", "snapshot"):
        if role in state.roles:
            roles.append(_role_state(role, Metadata.from_bytes(state.roles[role]), root_md.signed, "root", now))
    targets: list[dict] = []
    if "targets" in state.roles:
        queue: list[tuple[str, Metadata[Targets], Root | Targets, str]] = [
            ("targets", Metadata[Targets].from_bytes(state.roles["targets"]), root_md.signed, "root")]
        seen = set()
        while queue:
            role, md, delegator, delegator_name = queue.pop(0)
            if (delegator_name, role) in seen:
                continue
            seen.add((delegator_name, role))
            roles.append(_role_state(role, md, delegator, delegator_name, now))
            for path, tf in sorted(md.signed.targets.items()):
                targets.append({"path": path, "length": tf.length, "hashes": dict(tf.hashes),
                                "custom": custom_of(tf), "role": role})
            if md.signed.delegations and md.signed.delegations.roles:
                for child in md.signed.delegations.roles.values():
                    if child.name in state.roles:
                        queue.append((child.name, Metadata[Targets].from_bytes(state.roles[child.name]), md.signed,
                                      role))
    return TrustReport(repository=info, root_versions=store.root_versions(), roles=roles, targets=targets,
                       imports=[e.to_dict() for e in import_history(name, after=_history_after(name))])


def _add_targets(report: TrustReport, state, now: datetime) -> None:
    """Sort every listed target as a client's lookup at ``now`` sees it."""
    signed = targets_roles(state)
    report.refresh_problem = refresh_problem(state, now)
    report.unavailable_roles = unavailable_roles(signed, now=now)
    for status in resolve_targets(signed, now=now):
        tf = status.target
        if status.state == AVAILABLE and report.refresh_problem is None:
            report.targets.append({"path": status.path, "length": tf.length, "hashes": dict(tf.hashes),
                                   "custom": custom_of(tf), "role": status.role})
        elif status.state == IGNORED:
            report.ignored.append({"path": status.path, "role": status.role, "why": status.why})
        else:
            why = status.why if status.state != AVAILABLE else f"a client's refresh fails: {report.refresh_problem}"
            report.unavailable.append({"path": status.path, "role": status.role, "why": why})


def _role_state(name: str, md: Metadata, delegator, delegator_name: str, now: datetime) -> RoleState:
    r = describe_role(name, md, delegator, delegator_name)
    return RoleState(
        name=r.name, version=r.version, expires=r.expires.isoformat(), days_left=(r.expires - now).days,
        keyids=r.keyids, keytypes=r.keytypes, threshold=r.threshold, signed_by=r.signed_by,
        delegator=r.delegator, paths=r.paths,
    )
