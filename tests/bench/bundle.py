"""Multi-GB bundles without holding the firmware in memory.

``RepoSim`` keeps target bytes in memory; here the big target files are
written straight to disk in the bundle layout
(``<media>/airlock/<repo>/targets/fw/<sha256>.<basename>``) and only their
length and hash go into the signed targets metadata.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import TargetFile

from tests.support.simulator import RepoSim

BLOCK = 16 << 20  # random bytes generated once, repeated in every file
PREFIX = 4096  # per-file header so that every file hashes differently


@dataclass(frozen=True)
class Payload:
    target: str  # TUF target path, e.g. fw/fw-003.bin
    file: Path  # the file in the bundle
    length: int
    sha256: str


class DiskRepo(RepoSim):
    """A RepoSim whose targets live on disk rather than in memory."""

    def add_target_file(self, payload: Payload, *, hardware=("plc-x",), version: str = "1.0.0") -> TargetFile:
        tf = TargetFile(payload.length, {"sha256": payload.sha256}, payload.target)
        tf.unrecognized_fields["custom"] = {"hardware": list(hardware), "version": version}
        self.targets.signed.targets[payload.target] = tf
        return tf

    def write_metadata(self, media: Path) -> Path:
        """Write ``media/airlock/<name>/metadata/*``; returns the media root."""
        meta = media / "airlock" / self.name / "metadata"
        meta.mkdir(parents=True, exist_ok=True)
        (meta.parent / "targets").mkdir(exist_ok=True)
        for name, data in self.metadata.items():
            (meta / name).write_bytes(data)
        return media


def _target_dir(media: Path, repo: str) -> Path:
    folder = media / "airlock" / repo / "targets" / "fw"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_payloads(media: Path, repo: str, count: int, size: int) -> list[Payload]:
    """``count`` files of ``size`` bytes: a numbered header, then one random
    block repeated; hashed while they are written."""
    folder = _target_dir(media, repo)
    block = memoryview(os.urandom(BLOCK))
    payloads = []
    for i in range(count):
        base = f"fw-{i:03d}.bin"
        part = folder / f".{base}.part"
        digest = hashlib.sha256()
        with open(part, "wb", buffering=0) as f:
            header = f"airlock benchmark payload {i}\n".encode().ljust(min(PREFIX, size), b".")
            f.write(header)
            digest.update(header)
            left = size - len(header)
            while left:
                chunk = block[:left]
                f.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        sha = digest.hexdigest()
        final = folder / f"{sha}.{base}"
        part.rename(final)
        payloads.append(Payload(f"fw/{base}", final, size, sha))
    return payloads


def link_payloads(media: Path, repo: str, payloads: list[Payload]) -> list[Payload]:
    """The same files in another bundle, as hard links (no extra disk)."""
    folder = _target_dir(media, repo)
    linked = []
    for p in payloads:
        dest = folder / p.file.name
        os.link(p.file, dest)
        linked.append(Payload(p.target, dest, p.length, p.sha256))
    return linked


def signed_bundle(media: Path, repo: str, payloads: list[Payload]) -> DiskRepo:
    """Sign targets metadata listing ``payloads`` and write the bundle's metadata."""
    sim = DiskRepo(repo)
    for p in payloads:
        sim.add_target_file(p)
    sim.publish()
    sim.write_metadata(media)
    return sim
