"""Staging a bundle (signing/bundle.py): the two passes and the digest."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from signing.bundle import locate_bundle, scan_bundle
from signing.exceptions import UnsafeBundleError

A = b"A" * 3000
B = b"B" * 10
A_NAME = f"acme/targets/fw/{hashlib.sha256(A).hexdigest()}.a.bin"
B_NAME = f"acme/targets/{hashlib.sha512(B).hexdigest()}.b.bin"  # named by a sha512 hash
FILES = {
    "acme/metadata/1.root.json": b'{"root": 1}',
    "acme/metadata/timestamp.json": b'{"ts": 1}',
    A_NAME: A,
    B_NAME: B,
}
WANTED = {A_NAME: (len(A), ["sha256"]), B_NAME: (len(B), ["sha512"])}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _expected(files: dict[str, bytes], altered: frozenset[str] = frozenset()) -> str:
    """The documented definition (docs/bundle-format.md), computed apart:
    metadata with its SHA-256; a target with null, or its actual SHA-256
    when it was read and is not what its name says."""
    manifest = sorted([name, len(data), hashlib.sha256(data).hexdigest()
                       if "/metadata/" in name or name in altered else None]
                      for name, data in files.items())
    return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()


def test_genuine_bundle_digest_does_not_depend_on_which_targets_were_read(tmp_path):
    staged = scan_bundle(_write(tmp_path / "b", FILES), tmp_path / "staging")
    before = staged.digest
    assert before == _expected(FILES)
    staged.fetch_targets(dict(WANTED))
    # sha256 is computed for every copy, in the same read, whatever the metadata lists
    assert set(staged.fetched[B_NAME].hashes) == {"sha256", "sha512"}
    assert staged.digest == before


def test_a_flipped_byte_in_a_target_read_changes_the_digest(tmp_path):
    tampered = dict(FILES)
    tampered[A_NAME] = A[:-1] + b"a"
    staged = scan_bundle(_write(tmp_path / "b", tampered), tmp_path / "staging")
    assert staged.digest == _expected(FILES)  # not read yet: same names and lengths as the genuine one
    staged.fetch_targets(dict(WANTED))
    assert staged.digest == _expected(tampered, frozenset({A_NAME}))
    assert staged.digest != _expected(FILES)


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
    digests = []
    for i, source in enumerate((tmp_path / "media", archive)):
        staged = scan_bundle(source, tmp_path / f"staging{i}")
        staged.fetch_targets(dict(WANTED))
        digests.append(staged.digest)
    assert digests[0] == digests[1] == _expected(FILES)


def test_locate_bundle_takes_the_media_root_or_the_folder(tmp_path):
    folder = _write(tmp_path / "media" / "airlock", FILES)
    assert locate_bundle(tmp_path / "media") == folder
    assert locate_bundle(folder) == folder
    with pytest.raises(UnsafeBundleError, match="does not exist"):
        locate_bundle(tmp_path / "absent")
    with pytest.raises(UnsafeBundleError, match=r"one repository's folder .*give the stick"):
        locate_bundle(folder / "acme")
