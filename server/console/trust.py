"""The Trust page's and API's read model: one repository's roles, keys,
thresholds and expiries, which keys signed each current file, the
delegation tree, the root version history with what changed from each
version to the next, and the raw signed metadata files it serves.  Read
from the published tree through ``server.repositories``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tuf.api.metadata import Metadata, Root

from server.devices.exceptions import NotFoundError
from server.repositories.services import RoleState, check_repo_name, get_repository, trust_report
from server.repositories.store import RepositoryStore, is_metadata_name
from server.settings import Settings
from signing.exceptions import AirlockError
from signing.trust import valid_signers

MAX_RAW = 32 << 20  # bytes of one metadata file shown raw
TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


@dataclass(frozen=True)
class RootVersion:
    version: int
    expires: str
    roles: dict[str, dict]  # role -> {"keyids": [...], "threshold": N}
    signed_by: list[str]  # this version's root keys whose signature on it verifies
    changes: list[str]  # against the version before (empty for the first)


@dataclass(frozen=True)
class TreeNode:
    role: str
    delegator: str | None
    depth: int
    paths: list[str] | None


@dataclass(frozen=True)
class TrustView:
    name: str
    root_fingerprint: str
    pinned_root_version: int
    roles: list[RoleState]
    tree: list[TreeNode]  # depth-first from root
    root_history: list[RootVersion]  # oldest first
    files: list[str]  # the metadata files served, for their raw text
    refresh_problem: str | None = None
    unavailable_roles: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _roles_of(root: Root) -> dict[str, dict]:
    return {name: {"keyids": sorted(role.keyids), "threshold": role.threshold} for name, role in root.roles.items()}


def root_changes(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """What changed in the top-level roles' keys and thresholds, one line each."""
    out = []
    for role in sorted(set(before) | set(after), key=lambda r: (TOP_ROLES.index(r) if r in TOP_ROLES else 9, r)):
        old = before.get(role, {"keyids": [], "threshold": None})
        new = after.get(role, {"keyids": [], "threshold": None})
        for keyid in new["keyids"]:
            if keyid not in old["keyids"]:
                out.append(f"{role}: key {keyid[:16]} added")
        for keyid in old["keyids"]:
            if keyid not in new["keyids"]:
                out.append(f"{role}: key {keyid[:16]} removed")
        if old["threshold"] != new["threshold"]:
            out.append(f"{role}: threshold {old['threshold']} -> {new['threshold']}")
    return out


def root_history(store: RepositoryStore) -> list[RootVersion]:
    out: list[RootVersion] = []
    before: dict[str, dict] | None = None
    for version in store.root_versions():
        raw = store.read_metadata(f"{version}.root.json", MAX_RAW)
        if raw is None:
            continue
        md = Metadata[Root].from_bytes(raw)
        roles = _roles_of(md.signed)
        signed_by = valid_signers(md, md.signed.roles["root"].keyids, md.signed.keys)
        out.append(RootVersion(version, md.signed.expires.isoformat(), roles, signed_by,
                               root_changes(before, roles) if before is not None else []))
        before = roles
    return out


def _tree(roles: list[RoleState]) -> list[TreeNode]:
    children: dict[str, list[RoleState]] = {}
    for r in roles:
        if r.name != "root":
            children.setdefault(r.delegator or "root", []).append(r)
    out: list[TreeNode] = [TreeNode("root", None, 0, None)]

    def walk(parent: str, depth: int, seen: frozenset[str]) -> None:
        for child in children.get(parent, []):
            out.append(TreeNode(child.name, parent, depth, child.paths))
            if child.name not in seen:
                walk(child.name, depth + 1, seen | {child.name})

    walk("root", 1, frozenset({"root"}))
    return out


def _pinned(name: str):
    try:
        check_repo_name(name)
        return get_repository(name)
    except AirlockError:
        raise NotFoundError(f"no pinned repository {name[:64]!r}: see the Repositories page") from None


def trust(settings: Settings, name: str) -> TrustView:
    info = _pinned(name)
    report = trust_report(settings, name)
    store = RepositoryStore(settings.public_dir, name)
    files = [f for f in store.metadata_names() if f.endswith(".json") and is_metadata_name(f)]
    return TrustView(info.name, info.root_fingerprint, info.pinned_root_version, report.roles, _tree(report.roles),
                     root_history(store), files, report.refresh_problem, dict(report.unavailable_roles))


def raw_metadata(settings: Settings, name: str, filename: str) -> bytes:
    """One served metadata file's bytes, exactly as signed and served."""
    _pinned(name)
    data = RepositoryStore(settings.public_dir, name).read_metadata(filename, MAX_RAW) \
        if is_metadata_name(filename) and filename.endswith(".json") else None
    if data is None:
        raise NotFoundError(f"repository {name} serves no metadata file {filename[:80]!r}: pick one from its "
                            "Trust page")
    return data
