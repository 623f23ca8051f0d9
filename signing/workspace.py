"""The vendor's TUF repository on the offline workstation.

A :class:`Workspace` edits metadata in ``staged/`` (unsigned or partly
signed, portable to another machine for signing), and :meth:`Workspace.publish`
turns staged roles into new versions under ``published/`` together with a new
snapshot and timestamp, exactly as TUF clients fetch them (consistent
snapshots always on).  Nothing reaches ``published/`` unless the whole new
repository verifies with the client's rules: thresholds, root chain, expiry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Root, TargetFile, Targets

from signing import _workspace_bundle
from signing._workspace_store import (
    DEFAULT_EXPIRY_DAYS,
    TOP_LEVEL,
    Layout,
    Settings,
    atomic_write,
    check_days,
    check_repo_name,
    import_target_file,
    read_metadata,
    serialize,
    utc_in,
)
from signing._workspace_trust import (
    MAX_KEYS_PER_ROLE,
    check_custom,
    check_path_pattern,
    check_threshold,
    find_keyids,
    per_role,
    results_for,
)
from signing.exceptions import WorkspaceError
from signing.keys import generate_signer, load_public_key, save_key, save_public_key
from signing.paths import check_role_name, check_target_path, show

logger = logging.getLogger(__name__)


class Workspace:
    """One vendor repository on disk; see the module docstring."""

    def __init__(self, path: Path, settings: Settings):
        self.layout = Layout(path)
        self.settings = settings

    @property
    def path(self) -> Path:
        return self.layout.root

    @property
    def name(self) -> str:
        return self.settings.name

    # creating and opening ------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        name: str,
        *,
        passphrase: bytes,
        key_type: str = "ed25519",
        key_counts: dict[str, int] | None = None,
        thresholds: dict[str, int] | None = None,
        expiry_days: dict[str, int] | None = None,
    ) -> Workspace:
        """A new workspace with keys and version 1 of all four roles, published."""
        path = Path(path)
        check_repo_name(name)
        counts = per_role("key count", dict.fromkeys(TOP_LEVEL, 1), key_counts)
        limits = per_role("threshold", dict.fromkeys(TOP_LEVEL, 1), thresholds)
        days = per_role("expiry", dict(DEFAULT_EXPIRY_DAYS), expiry_days)
        for role in TOP_LEVEL:
            check_threshold(role, limits[role], counts[role])
            check_days(role, days[role])
        generate_signer(key_type)  # refuse an unknown key type before touching disk
        if not passphrase:
            raise WorkspaceError("a passphrase is needed to encrypt the new keys")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorkspaceError(f"{path} already exists and is not an empty folder: choose a new folder")
        ws = cls(path, Settings(name=name, expiry_days=days, key_type=key_type))
        for d in (ws.layout.keys, ws.layout.staged, ws.layout.metadata, ws.layout.targets):
            d.mkdir(parents=True, exist_ok=True)
        ws.layout.keys.chmod(0o700)
        ws.layout.write_settings(ws.settings)

        root = Root(version=1, expires=utc_in(days["root"]), consistent_snapshot=True)
        signers: list[CryptoSigner] = []
        for role in TOP_LEVEL:
            for key in ws._new_keys(role, counts[role], key_type, passphrase, signers):
                root.add_key(key, role)
            root.roles[role].threshold = limits[role]
        atomic_write(ws.layout.staged_file("root"), serialize(Metadata(root)))
        targets = Targets(version=1, expires=utc_in(days["targets"]))
        atomic_write(ws.layout.staged_file("targets"), serialize(Metadata(targets)))
        ws.publish(signers)
        return ws

    @classmethod
    def open(cls, path: Path | str) -> Workspace:
        layout = Layout(Path(path))
        return cls(layout.root, layout.read_settings())

    def _new_keys(
        self, role: str, count: int, key_type: str | None, passphrase: bytes | None, collect: list | None = None
    ) -> list[Key]:
        """Generate ``count`` keys for ``role`` and save them under ``keys/``."""
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_KEYS_PER_ROLE:
            raise WorkspaceError(f"cannot make {count!r} new keys for {role}: use 0 to {MAX_KEYS_PER_ROLE}")
        if count and not passphrase:
            raise WorkspaceError(f"a passphrase is needed to encrypt the new key(s) for {role}")
        keys: list[Key] = []
        for _ in range(count):
            assert passphrase  # checked above for any count > 0
            signer = generate_signer(key_type or self.settings.key_type)
            key_path = self.layout.new_key_path(role)
            save_key(signer, key_path, passphrase)
            save_public_key(signer.public_key, key_path.with_suffix(".pub"))
            logger.info("new key %s for %s in %s", signer.public_key.keyid, role, key_path)
            keys.append(signer.public_key)
            if collect is not None:
                collect.append(signer)
        return keys

    # reading state -------------------------------------------------------
    def published_versions(self) -> dict[str, int]:
        """Current published version of every role ({} before the first publish)."""
        roots = self.layout.root_versions()
        if not roots:
            return {}
        ts = self._read(self.layout.published_file("timestamp"), "timestamp")
        snap_v = ts.signed.snapshot_meta.version
        snap = self._read(self.layout.published_file("snapshot", snap_v), "snapshot")
        versions = {"root": roots[-1], "timestamp": ts.signed.version, "snapshot": snap_v}
        for fname, meta in snap.signed.meta.items():
            versions[fname.removesuffix(".json")] = meta.version
        return versions

    def staged_roles(self) -> list[str]:
        names = sorted(p.name.removesuffix(".json") for p in self.layout.staged.glob("*.json"))
        for name in names:
            if name in ("snapshot", "timestamp"):
                raise WorkspaceError(
                    f"staged/{name}.json should not exist: snapshot and timestamp are made by publish; remove it"
                )
            if name not in TOP_LEVEL:
                check_role_name(name)
        order = {"root": 0, "targets": 1}
        return sorted(names, key=lambda n: (order.get(n, 2), n))

    def _read(self, path: Path, role: str) -> Metadata:
        md = read_metadata(path)
        expected = "targets" if role not in TOP_LEVEL else role
        if md.signed.type != expected:
            raise WorkspaceError(f"{path} holds {md.signed.type} metadata, expected {expected}")
        return md

    def _published(self, role: str, versions: dict[str, int] | None = None) -> Metadata | None:
        versions = self.published_versions() if versions is None else versions
        if role not in versions:
            return None
        return self._read(self.layout.published_file(role, versions[role]), role)

    def _staged(self, role: str) -> Metadata | None:
        path = self.layout.staged_file(role)
        return self._read(path, role) if path.exists() else None

    def _staged_role(self, role: str) -> Metadata:
        """The staged copy of a role that is listed as staged."""
        md = self._staged(role)
        if md is None:
            raise WorkspaceError(f"{show(role)} is not staged: stage it first")
        return md

    def _current(self, role: str) -> Metadata:
        md = self._staged(role) or self._published(role)
        if md is None:
            raise WorkspaceError(f"role {show(role)} has no metadata in this workspace")
        return md

    def delegation_graph(self) -> dict[str, str]:
        """Every delegated role (staged view) -> the role that delegates it."""
        parents: dict[str, str] = {}
        queue = ["targets"]
        while queue:
            name = queue.pop(0)
            delegations = self._current(name).signed.delegations
            if delegations is None:
                continue
            if delegations.roles is None:
                raise WorkspaceError(f"{name} uses succinct delegations, which airlock-sign does not manage")
            for child in delegations.roles:
                check_role_name(child)
                if child in parents:
                    raise WorkspaceError(f"role {child} is delegated twice ({parents[child]} and {name})")
                parents[child] = name
                queue.append(child)
        return parents

    def _delegator_name(self, role: str, graph: dict[str, str]) -> str:
        if role in TOP_LEVEL:
            return "root"
        if role not in graph:
            raise WorkspaceError(f"role {show(role)} does not exist: create it with 'delegate'")
        return graph[role]

    def _check_role(self, role: str, graph: dict[str, str]) -> None:
        if role not in TOP_LEVEL and role not in graph:
            raise WorkspaceError(f"role {show(role)} does not exist (roles: {', '.join([*TOP_LEVEL, *graph])})")

    # editing -------------------------------------------------------------
    @contextmanager
    def _edit(self, role: str) -> Iterator[Metadata]:
        """Yield the staged copy of ``role`` (made from published if needed);
        on success drop its signatures, refresh its expiry and save it."""
        md = self._staged(role)
        if md is None:
            published = self._published(role)
            if published is None:
                raise WorkspaceError(f"role {show(role)} has no metadata in this workspace")
            md = published
            md.signed.version += 1
        yield md
        md.signatures.clear()
        md.signed.expires = utc_in(self.settings.days_for(role))
        atomic_write(self.layout.staged_file(role), serialize(md))

    def add_target(
        self, local_file: Path | str, target_path: str, *, hardware: Sequence[str], version: str, role: str = "targets"
    ) -> TargetFile:
        """Copy ``local_file`` in and list it as ``target_path`` in ``role``."""
        check_target_path(target_path)
        custom = check_custom(hardware, version)
        graph = self.delegation_graph()
        self._check_role(role, graph)
        if role in ("root", "snapshot", "timestamp"):
            raise WorkspaceError(f"targets can only be added to 'targets' or a delegated role, not {role}")
        if role != "targets":
            delegation = self._current(graph[role]).signed.get_delegated_role(role)
            if not delegation.is_delegated_path(target_path):
                raise WorkspaceError(
                    f"target path {show(target_path)} is outside what {role} may sign "
                    f"(paths: {', '.join(delegation.paths or [])})"
                )
        local_file = Path(local_file)
        if not local_file.is_file():
            raise WorkspaceError(f"{local_file} is not a regular file")
        _, length, sha = import_target_file(self.layout, local_file, target_path)
        target = TargetFile(length, {"sha256": sha}, target_path, unrecognized_fields={"custom": custom})
        with self._edit(role) as md:
            md.signed.targets[target_path] = target
        return target

    def remove_target(self, target_path: str, *, role: str = "targets") -> None:
        graph = self.delegation_graph()
        self._check_role(role, graph)
        if target_path not in self._current(role).signed.targets:
            raise WorkspaceError(f"{role} lists no target {show(target_path)}")
        with self._edit(role) as md:
            del md.signed.targets[target_path]

    def delegate(
        self,
        role_name: str,
        paths: Sequence[str],
        *,
        parent: str = "targets",
        key_count: int | None = None,
        threshold: int = 1,
        key_type: str | None = None,
        public_keys: Iterable[Path | str] = (),
        passphrase: bytes | None = None,
        terminating: bool = False,
    ) -> list[str]:
        """Delegate ``paths`` to a new role; returns the new role's key ids.

        ``key_count`` new keys are made (default: 1, or 0 when public keys are given)."""
        check_role_name(role_name)
        graph = self.delegation_graph()
        if parent != "targets" and parent not in graph:
            raise WorkspaceError(f"parent role {show(parent)} does not exist: it must be 'targets' or a delegated role")
        if role_name in graph or self.layout.staged_file(role_name).exists():
            raise WorkspaceError(f"role {role_name} already exists")
        if not paths:
            raise WorkspaceError("a delegation needs at least one path pattern, e.g. 'firmware/model-x/*'")
        patterns = [check_path_pattern(p) for p in paths]
        given = [load_public_key(p) for p in public_keys]
        count = (0 if given else 1) if key_count is None else key_count
        check_threshold(role_name, threshold, count + len({k.keyid for k in given}))
        keys = given + self._new_keys(role_name, count, key_type, passphrase)
        with self._edit(parent) as md:
            if md.signed.delegations is None:
                md.signed.delegations = Delegations(keys={}, roles={})
            md.signed.delegations.roles[role_name] = DelegatedRole(
                role_name, [], threshold, terminating, paths=patterns
            )
            for key in keys:
                md.signed.add_key(key, role_name)
        new = Metadata(Targets(version=1, expires=utc_in(self.settings.days_for(role_name))))
        atomic_write(self.layout.staged_file(role_name), serialize(new))
        return [k.keyid for k in keys]

    def rotate(
        self,
        role: str,
        *,
        new_key_count: int | None = None,
        public_keys: Iterable[Path | str] = (),
        remove_keyids: Sequence[str] | None = None,
        threshold: int | None = None,
        key_type: str | None = None,
        passphrase: bytes | None = None,
    ) -> dict[str, list[str]]:
        """Replace keys of ``role``: returns {"added": [...], "removed": [...]}.

        ``new_key_count`` new keys are made (default: 1, or 0 when public keys
        are given); ``remove_keyids`` default to all current keys of the role."""
        graph = self.delegation_graph()
        self._check_role(role, graph)
        delegator = self._delegator_name(role, graph)
        current = self._current(delegator).signed.get_delegated_role(role)
        remove = list(current.keyids) if remove_keyids is None else find_keyids(role, current.keyids, remove_keyids)
        given = [load_public_key(p) for p in public_keys]
        count = (0 if given else 1) if new_key_count is None else new_key_count
        kept = {k for k in current.keyids if k not in remove}
        total = len(kept | {k.keyid for k in given}) + count
        limit = current.threshold if threshold is None else threshold
        check_threshold(role, limit, total)
        keys = given + self._new_keys(role, count, key_type, passphrase)
        with self._edit(delegator) as md:
            for keyid in remove:
                md.signed.revoke_key(keyid, role)
            for key in keys:
                md.signed.add_key(key, role)
            md.signed.get_delegated_role(role).threshold = limit
        if role not in ("root", "snapshot", "timestamp"):
            with self._edit(role):  # must be re-signed by its new keys
                pass
        return {"added": [k.keyid for k in keys], "removed": remove}

    def authorize_timestamp_key(self, public_key: Path | str, *, threshold: int = 1) -> dict[str, Any]:
        """Add an appliance's timestamp key to the root's timestamp role,
        keeping the vendor's own timestamp keys, with ``threshold``: a new
        root version is staged.  With threshold 1 either the vendor's key or
        the appliance's alone signs a valid timestamp (``airlock timestamp
        refresh`` needs exactly that)."""
        key = load_public_key(public_key)
        current = self._current("root").signed.get_delegated_role("timestamp")
        if key.keyid in current.keyids:
            raise WorkspaceError(f"key {key.keyid[:16]} is already a timestamp key of this repository "
                                 f"(threshold {current.threshold}): nothing to stage")
        change = self.rotate("timestamp", public_keys=[public_key], remove_keyids=[], threshold=threshold)
        role = self._current("root").signed.get_delegated_role("timestamp")
        return {"keyid": key.keyid, "added": change["added"], "keyids": list(role.keyids),
                "threshold": role.threshold}

    def set_expiry(self, role: str, days: int) -> bool:
        """Set ``role``'s expiry period; True if a new version was staged
        (snapshot and timestamp take it at the next publish)."""
        check_days(role, days)
        self._check_role(role, self.delegation_graph())
        self.settings.expiry_days[role] = days
        self.layout.write_settings(self.settings)
        if role in ("snapshot", "timestamp"):
            return False
        with self._edit(role):
            pass
        return True

    # signing -------------------------------------------------------------
    def _sign_plan(self, signers: Sequence[CryptoSigner], roles: Iterable[str] | None) -> dict[str, list]:
        graph = self.delegation_graph()
        staged = self.staged_roles()
        wanted = staged if roles is None else list(roles)
        for role in wanted:
            if role not in staged:
                raise WorkspaceError(f"{show(role)} is not staged (staged: {', '.join(staged) or 'nothing'})")
        plan: dict[str, list] = {}
        for role in wanted:
            md = self._staged_role(role)
            allowed: set[str] = set()
            for _, delegator, _ in results_for(self, role, md, graph):
                allowed |= set(delegator.get_delegated_role(role).keyids)
            plan[role] = [s for s in signers if s.public_key.keyid in allowed]
        return plan

    def _apply(self, plan: dict[str, list]) -> list[tuple[str, str]]:
        done = []
        for role, signers in plan.items():
            if not signers:
                continue
            md = self._staged_role(role)
            for signer in signers:
                md.sign(signer, append=True)
                done.append((role, signer.public_key.keyid))
            atomic_write(self.layout.staged_file(role), serialize(md))
        return done

    def sign(self, signers: Sequence[CryptoSigner], roles: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """Append signatures to every staged role each key may sign.

        Returns (role, keyid) pairs; refuses a key that signs nothing."""
        if not self.staged_roles():
            raise WorkspaceError("nothing is staged: there is nothing to sign")
        plan = self._sign_plan(signers, roles)
        used = {s.public_key.keyid for group in plan.values() for s in group}
        for signer in signers:
            if signer.public_key.keyid not in used:
                raise WorkspaceError(
                    f"key {signer.public_key.keyid[:16]} is not a key of any staged role "
                    f"({', '.join(plan) or 'nothing staged'})"
                )
        return self._apply(plan)

    def status(self) -> list[dict[str, Any]]:
        """Per staged role: version, expiry, signatures present and needed."""
        graph = self.delegation_graph()
        out = []
        for role in self.staged_roles():
            md = self._staged_role(role)
            checks = [
                {
                    "keys_of": label,
                    "signed": len(result.signed),
                    "threshold": result.threshold,
                    "missing": result.missing,
                    "unsigned_keyids": sorted(result.unsigned),
                }
                for label, _, result in results_for(self, role, md, graph)
            ]
            out.append(
                {
                    "role": role,
                    "version": md.signed.version,
                    "expires": md.signed.expires.isoformat(),
                    "signatures": checks,
                    "ready": all(c["missing"] == 0 for c in checks),
                }
            )
        return out

    # publishing ----------------------------------------------------------
    def publish(self, signers: Sequence[CryptoSigner]) -> dict[str, int]:
        """Sign, check and publish staged roles with a new snapshot and
        timestamp; returns the new version of every role written."""
        from signing._workspace_publish import publish

        return publish(self, signers)

    def write_bundle(
        self, dest: Path | str, *, fmt: str = "dir", exclude_from: Path | str | None = None
    ) -> Path:
        """Write the published repository as a bundle (see docs/vendor-guide.md)."""
        files = _workspace_bundle.published_files(self)
        return _workspace_bundle.write_bundle(
            self.name, files, Path(dest), fmt=fmt, exclude_from=None if exclude_from is None else Path(exclude_from)
        )

