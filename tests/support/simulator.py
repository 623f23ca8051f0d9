"""A vendor repository simulator for tests: real keys, real signed metadata.

Like python-tuf's RepositorySimulator, but it writes Airlock bundles.  It
gives tests full control (sign with the wrong key, roll a version back,
expire a role) so refusal cases are built from genuine signatures rather
than hand-edited fixtures.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from signing.paths import role_filename

TOP = ("root", "timestamp", "snapshot", "targets")


def in_days(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


class RepoSim:
    def __init__(self, name: str = "acme", key_type: str = "ed25519"):
        self.name = name
        self.key_type = key_type
        self.signers: dict[str, list[CryptoSigner]] = {}
        self.root = Metadata(Root(expires=in_days(365), consistent_snapshot=True))
        for role in TOP:
            self.add_key(role)
        self.targets = Metadata(Targets(expires=in_days(90)))
        self.snapshot = Metadata(Snapshot(expires=in_days(30)))
        self.timestamp = Metadata(Timestamp(expires=in_days(7)))
        self.delegated: dict[str, Metadata] = {}
        self.metadata: dict[str, bytes] = {}  # published file name -> bytes
        self.target_files: dict[str, bytes] = {}  # targets/ relpath -> bytes
        self.sign_and_store("root")
        self.publish()

    # keys -------------------------------------------------------------------
    def new_signer(self) -> CryptoSigner:
        if self.key_type == "ecdsa":
            return CryptoSigner.generate_ecdsa()
        return CryptoSigner.generate_ed25519()

    def add_key(self, role: str, signer: CryptoSigner | None = None) -> CryptoSigner:
        signer = signer or self.new_signer()
        self.root.signed.add_key(signer.public_key, role)
        self.signers.setdefault(role, []).append(signer)
        return signer

    def rotate(self, role: str, *, threshold: int | None = None, count: int = 1) -> None:
        """Replace every key of a top-level role; bumps and re-signs root
        with the old and the new root keys."""
        old_root_signers = list(self.signers["root"])
        for signer in self.signers[role]:
            self.root.signed.revoke_key(signer.public_key.keyid, role)
        self.signers[role] = []
        for _ in range(count):
            self.add_key(role)
        if threshold:
            self.root.signed.roles[role].threshold = threshold
        self.root.signed.version += 1
        self.sign_and_store("root", extra=old_root_signers if role == "root" else ())

    # metadata ---------------------------------------------------------------
    @property
    def published_root_bytes(self) -> bytes:
        return self.metadata[f"{self.root.signed.version}.root.json"]

    def first_root(self) -> bytes:
        return self.metadata["1.root.json"]

    def sign(self, md: Metadata, signers) -> bytes:
        md.signatures.clear()
        for s in signers:
            md.sign(s, append=True)
        return md.to_bytes(JSONSerializer(compact=False))

    def sign_and_store(self, role: str, extra=()) -> None:
        if role == "root":
            data = self.sign(self.root, list(self.signers["root"]) + list(extra))
            self.metadata[f"{self.root.signed.version}.root.json"] = data

    def add_target(self, path: str, data: bytes, *, role: str = "targets", hardware=("plc-x",),
                   version: str = "1.0.0", custom: dict | None = None) -> TargetFile:
        tf = TargetFile.from_data(path, data, ["sha256"])
        tf.unrecognized_fields["custom"] = custom if custom is not None else {
            "hardware": list(hardware), "version": version}
        md = self.targets if role == "targets" else self.delegated[role]
        md.signed.targets[path] = tf
        folder, _, base = path.rpartition("/")
        prefix = f"{folder}/" if folder else ""
        self.target_files[f"{prefix}{tf.hashes['sha256']}.{base}"] = data
        return tf

    def remove_target(self, path: str, role: str = "targets") -> None:
        md = self.targets if role == "targets" else self.delegated[role]
        del md.signed.targets[path]

    def delegate(self, role: str, paths: list[str], *, parent: str = "targets", threshold: int = 1,
                 count: int = 1) -> None:
        parent_md = self.targets if parent == "targets" else self.delegated[parent]
        if parent_md.signed.delegations is None:
            parent_md.signed.delegations = Delegations(keys={}, roles={})
        signers = [self.new_signer() for _ in range(count)]
        parent_md.signed.delegations.roles[role] = DelegatedRole(
            name=role, keyids=[], threshold=threshold, terminating=False, paths=paths)
        for s in signers:
            parent_md.signed.add_key(s.public_key, role)
        self.signers[role] = signers
        self.delegated[role] = Metadata(Targets(expires=in_days(90)))
        self.delegated[role].signed.version = 0  # first publish makes it 1

    def publish(self, roles=("targets",), *, signers: dict | None = None) -> None:
        """Bump and sign ``roles``, then a new snapshot and timestamp."""
        signers = signers or {}
        for role in roles:
            md = self.targets if role == "targets" else self.delegated[role]
            if self.metadata.get(role_filename(md.signed.version, role)) is not None or md.signed.version == 0:
                md.signed.version += 1
            data = self.sign(md, signers.get(role, self.signers[role]))
            self.metadata[role_filename(md.signed.version, role)] = data
            self.snapshot.signed.meta[f"{role}.json"] = MetaFile(version=md.signed.version)
        self.snapshot.signed.version += 1
        snap = self.sign(self.snapshot, signers.get("snapshot", self.signers["snapshot"]))
        self.metadata[f"{self.snapshot.signed.version}.snapshot.json"] = snap
        self.timestamp.signed.version += 1
        self.timestamp.signed.snapshot_meta = MetaFile(version=self.snapshot.signed.version)
        self.metadata["timestamp.json"] = self.sign(self.timestamp, signers.get("timestamp", self.signers["timestamp"]))

    def resign(self, role: str, signers=None) -> None:
        """Re-sign the current version of ``role`` in place (after a tamper)."""
        if role == "timestamp":
            self.metadata["timestamp.json"] = self.sign(self.timestamp, signers or self.signers["timestamp"])
            return
        md = {"root": self.root, "snapshot": self.snapshot, "targets": self.targets}.get(role) or self.delegated[role]
        self.metadata[role_filename(md.signed.version, role)] = self.sign(md, signers or self.signers[role])

    # output -----------------------------------------------------------------
    def write_bundle(self, media: Path, *, include_targets=True, only_targets=None) -> Path:
        """Write ``media/airlock/<name>/...``; returns the media root."""
        repo = media / "airlock" / self.name
        if repo.exists():
            shutil.rmtree(repo)
        (repo / "metadata").mkdir(parents=True)
        (repo / "targets").mkdir()
        for name, data in self.metadata.items():
            (repo / "metadata" / name).write_bytes(data)
        if include_targets:
            for rel, data in self.target_files.items():
                if only_targets is not None and rel not in only_targets:
                    continue
                dest = repo / "targets" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
        return media


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
