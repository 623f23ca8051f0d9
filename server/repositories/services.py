"""Pinning repositories and reading their trust state: one service for the
CLI, the API and the console."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root

from server import audit
from server.models import ImportRecord, Repository, database
from server.repositories.store import RepositoryStore
from server.settings import Settings
from signing import paths
from signing.exceptions import AirlockError, RepositoryNameError, VerificationError
from signing.trust import describe_role
from signing.verify import MAX_LENGTH, check_root_keys, custom_of


class RepositoryError(AirlockError):
    """A repository cannot be pinned, found or read."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
    targets: list[dict]
    imports: list[dict] = field(default_factory=list)

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
                                added_at=now_iso(), added_by=operator)
        store.create(data, md.signed.version)
        audit.record(operator, "repository.pin", name, {"root_version": md.signed.version, "root_sha256": actual})
    return _info(row)


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


def import_history(name: str | None = None, limit: int = 50) -> list[dict]:
    out = []
    for rec in ImportRecord.select().order_by(ImportRecord.id.desc()).limit(limit * 4 if name else limit):
        details = json.loads(rec.details or "{}")
        repos = details.get("repositories", {})
        if name and name not in repos and rec.status != "refused":
            continue
        if name and rec.status == "refused" and name not in details.get("names", []):
            continue
        out.append({"id": rec.id, "started_at": rec.started_at, "finished_at": rec.finished_at,
                    "operator": rec.operator, "source": rec.source, "bundle_digest": rec.bundle_digest,
                    "status": rec.status, "reason": rec.reason,
                    "repository": repos.get(name) if name else repos})
        if len(out) >= limit:
            break
    return out


def trust_report(settings: Settings, name: str, now: datetime | None = None) -> TrustReport:
    """The whole trust state of a repository, from the files it serves."""
    info = get_repository(name)
    now = now or datetime.now(timezone.utc)
    store = RepositoryStore(settings.public_dir, name)
    state = store.trusted_state()
    root_md = Metadata[Root].from_bytes(state.root)
    roles: list[RoleState] = [_role_state("root", root_md, root_md.signed, "root", now)]
    for role in ("timestamp", "snapshot"):
        if role in state.roles:
            roles.append(_role_state(role, Metadata.from_bytes(state.roles[role]), root_md.signed, "root", now))
    targets: list[dict] = []
    if "targets" in state.roles:
        queue = [("targets", Metadata.from_bytes(state.roles["targets"]), root_md.signed, "root")]
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
                        queue.append((child.name, Metadata.from_bytes(state.roles[child.name]), md.signed, role))
    return TrustReport(repository=info, root_versions=store.root_versions(), roles=roles, targets=targets,
                       imports=import_history(name))


def _role_state(name: str, md: Metadata, delegator, delegator_name: str, now: datetime) -> RoleState:
    r = describe_role(name, md, delegator, delegator_name)
    return RoleState(
        name=r.name, version=r.version, expires=r.expires.isoformat(), days_left=(r.expires - now).days,
        keyids=r.keyids, keytypes=r.keytypes, threshold=r.threshold, signed_by=r.signed_by,
        delegator=r.delegator, paths=r.paths,
    )
