"""Publishing: staged roles plus a new snapshot and timestamp, checked as a
whole with the client's rules before any file is written."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, Timestamp

from signing._workspace_store import atomic_write, serialize, utc_in
from signing._workspace_trust import results_for, shortfalls
from signing.exceptions import ThresholdError, WorkspaceError

if TYPE_CHECKING:
    from signing.workspace import Workspace

logger = logging.getLogger(__name__)


def publish(ws: Workspace, signers: Sequence[CryptoSigner]) -> dict[str, int]:
    staged = ws.staged_roles()
    versions = ws.published_versions()
    if staged:
        ws._apply(ws._sign_plan(signers, None))  # signatures are kept even if publishing fails
    graph = ws.delegation_graph()
    layout = ws.layout

    for role in staged:
        if role != "root" and role != "targets" and role not in graph:
            raise WorkspaceError(f"staged/{role}.json is not delegated by any role: remove it")
    new_files: dict[str, tuple[Path, bytes, Metadata]] = {}
    for role in staged:
        md = ws._staged_role(role)
        expected = versions.get(role, 0) + 1
        if md.signed.version != expected:
            raise WorkspaceError(
                f"staged {role} has version {md.signed.version} but the next version is {expected}: "
                "it was staged from other published metadata; stage it again"
            )
        new_files[role] = (layout.published_file(role, md.signed.version), serialize(md), md)
    if "root" not in staged and "root" not in versions:
        raise WorkspaceError("the workspace has no root metadata")

    # every staged role must meet its thresholds before anything else is made
    missing = []
    for role in staged:
        missing += shortfalls(role, results_for(ws, role, new_files[role][2], graph))
    if missing:
        raise ThresholdError(
            "not enough signatures to publish: " + "; ".join(missing)
            + " (collect them with 'airlock-sign sign', then publish)"
        )

    meta = {}
    for role in ["targets", *graph]:
        if role in new_files:
            meta[f"{role}.json"] = MetaFile(version=new_files[role][2].signed.version, length=len(new_files[role][1]))
        else:
            path = layout.published_file(role, versions[role])
            meta[f"{role}.json"] = MetaFile(version=versions[role], length=path.stat().st_size)
    root = ws._current("root").signed
    snapshot = Metadata(
        Snapshot(version=versions.get("snapshot", 0) + 1, expires=utc_in(ws.settings.days_for("snapshot")), meta=meta)
    )
    snap_bytes = _sign_online(snapshot, "snapshot", root, signers)
    timestamp = Metadata(
        Timestamp(
            version=versions.get("timestamp", 0) + 1,
            expires=utc_in(ws.settings.days_for("timestamp")),
            snapshot_meta=MetaFile(
                version=snapshot.signed.version,
                length=len(snap_bytes),
                hashes={"sha256": hashlib.sha256(snap_bytes).hexdigest()},
            ),
        )
    )
    ts_bytes = _sign_online(timestamp, "timestamp", root, signers)
    new_files["snapshot"] = (layout.published_file("snapshot", snapshot.signed.version), snap_bytes, snapshot)
    new_files["timestamp"] = (layout.published_file("timestamp"), ts_bytes, timestamp)

    _check_whole(ws, graph, versions, new_files)

    for role, (path, _, _) in new_files.items():
        if role != "timestamp" and path.exists():
            raise WorkspaceError(f"{path} already exists: published metadata is never overwritten")
    # timestamp last: until it changes, clients keep seeing the previous release
    order = [r for r in new_files if r not in ("root", "snapshot", "timestamp")] + ["snapshot", "timestamp"]
    if "root" in new_files:
        order.insert(0, "root")
    for role in order:
        path, data, _ = new_files[role]
        atomic_write(path, data)
    for role in staged:
        layout.staged_file(role).unlink()
    result = {role: new_files[role][2].signed.version for role in order}
    logger.info("published %s", result)
    return result


def _sign_online(md: Metadata, role: str, root, signers: Sequence[CryptoSigner]) -> bytes:
    allowed = set(root.roles[role].keyids)
    for signer in signers:
        if signer.public_key.keyid in allowed:
            md.sign(signer, append=True)
    result = root.get_verification_result(role, md.signed_bytes, md.signatures)
    if not result:
        raise ThresholdError(
            f"not enough signatures to publish: {role} needs {result.missing} more signature(s) from its keys "
            f"in root v{root.version} (has {len(result.signed)} of {result.threshold}); "
            f"pass {role} keys to publish (--key or --keys-dir)"
        )
    return serialize(md)


def _check_whole(ws: Workspace, graph: dict[str, str], versions: dict[str, int], new_files: dict) -> None:
    """The new repository as a client would see it: every role verified by
    its delegator, nothing expired."""
    now = datetime.now(UTC)
    unsigned, expired = [], []
    for role in ["root", "targets", *graph, "snapshot", "timestamp"]:
        md = new_files[role][2] if role in new_files else ws._published(role, versions)
        if md is None:
            raise WorkspaceError(f"role {role} has neither staged nor published metadata: stage it first")
        if role in new_files:
            unsigned += shortfalls(role, results_for(ws, role, md, graph))
        elif role != "root":  # an unchanged role whose delegator changed its keys
            unsigned += [
                f"{gap}: published {role} v{md.signed.version} no longer verifies, stage a new version "
                f"('airlock-sign expires DIR {role} DAYS') and sign it"
                for gap in shortfalls(role, results_for(ws, role, md, graph))
            ]
        if md.signed.is_expired(now):
            expired.append(
                f"{role} v{md.signed.version} expired on {md.signed.expires.isoformat()}: "
                f"stage a new version with 'airlock-sign expires DIR {role} DAYS' and sign it"
            )
    if unsigned:
        raise ThresholdError("refusing to publish: " + "; ".join(unsigned))
    if expired:
        raise WorkspaceError("refusing to publish: " + "; ".join(expired))
