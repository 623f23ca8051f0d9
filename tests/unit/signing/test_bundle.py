"""Staging a bundle (signing/bundle.py): the two passes and the digest."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from signing.bundle import locate_bundle, scan_bundle
from signing.exceptions import UnsafeBundleError

FILES = {
    "acme/metadata/1.root.json": b'{"root": 1}',
    "acme/metadata/timestamp.json": b'{"ts": 1}',
    "acme/targets/fw/abc.a.bin": b"A" * 3000,
    "acme/targets/def.b.bin": b"B" * 10,
}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _expected(files: dict[str, bytes], read: set[str]) -> str:
    """The documented definition (docs/bundle-format.md), computed apart."""
    manifest = sorted([name, len(data), hashlib.sha256(data).hexdigest() if name in read else None]
                      for name, data in files.items())
    return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()


METADATA = {n for n in FILES if "/metadata/" in n}


def test_digest_covers_metadata_at_scan_and_targets_once_copied(tmp_path):
    staged = scan_bundle(_write(tmp_path / "b", FILES), tmp_path / "staging")
    assert staged.digest == _expected(FILES, METADATA)
    # the metadata only lists sha512 for this one: sha256 is computed too, in the same read
    staged.fetch_targets({"acme/targets/fw/abc.a.bin": (3000, ["sha512"])})
    assert set(staged.fetched["acme/targets/fw/abc.a.bin"].hashes) == {"sha256", "sha512"}
    assert staged.digest == _expected(FILES, METADATA | {"acme/targets/fw/abc.a.bin"})


def test_a_flipped_byte_in_a_target_changes_the_digest(tmp_path):
    tampered = dict(FILES)
    tampered["acme/targets/fw/abc.a.bin"] = b"A" * 2999 + b"a"
    digests = []
    for i, files in enumerate((FILES, tampered)):
        staged = scan_bundle(_write(tmp_path / f"b{i}", files), tmp_path / f"staging{i}")
        assert staged.digest == _expected(files, METADATA)  # not read yet: same name and length
        staged.fetch_targets({"acme/targets/fw/abc.a.bin": (3000, ["sha256"])})
        digests.append(staged.digest)
    assert digests[0] != digests[1]


def test_a_changed_metadata_file_changes_the_digest_at_scan(tmp_path):
    changed = dict(FILES)
    changed["acme/metadata/timestamp.json"] = b'{"ts": 2}'
    a = scan_bundle(_write(tmp_path / "a", FILES), tmp_path / "sa").digest
    b = scan_bundle(_write(tmp_path / "b", changed), tmp_path / "sb").digest
    assert a != b


@pytest.mark.parametrize("fmt", ["w", "w:gz"])
def test_folder_and_archive_give_the_same_digest(tmp_path, fmt):
    folder = _write(tmp_path / "media" / "airlock", FILES)
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, fmt) as tar:
        tar.add(folder, arcname="airlock")
    wanted = {"acme/targets/fw/abc.a.bin": (3000, ["sha256"]), "acme/targets/def.b.bin": (10, ["sha256"])}
    digests = []
    for i, source in enumerate((tmp_path / "media", archive)):
        staged = scan_bundle(source, tmp_path / f"staging{i}")
        staged.fetch_targets(dict(wanted))
        digests.append(staged.digest)
    assert digests[0] == digests[1] == _expected(FILES, set(FILES))


def test_locate_bundle_takes_the_media_root_or_the_folder(tmp_path):
    folder = _write(tmp_path / "media" / "airlock", FILES)
    assert locate_bundle(tmp_path / "media") == folder
    assert locate_bundle(folder) == folder
    with pytest.raises(UnsafeBundleError, match="does not exist"):
        locate_bundle(tmp_path / "absent")
