"""Property-based fuzzing (hypothesis) of the bundle reader and the metadata
verifier.  In CI each property runs briefly; `make fuzz` runs them long
(HYPOTHESIS_PROFILE=fuzz).  Any input that ever broke a property is kept
below as an explicit @example, so it stays a regression test.

Properties:
- scanning any archive either stages it or refuses it with an
  AirlockError; it never raises anything else, never hangs, and never
  writes outside its staging folder;
- verifying any mutation of signed metadata either refuses it with an
  AirlockError or accepts it only when the signed content is unchanged.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from signing.bundle import BundleLimits, scan_bundle
from signing.exceptions import AirlockError
from signing.report import verify_staged_bundle
from signing.verify import TrustedState
from tests.support.simulator import RepoSim

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NAME_PARTS = st.sampled_from(["acme", "metadata", "targets", "..", ".", "", "airlock", "fw", "1.root.json",
                              "timestamp.json", "a\x00b", "a\\b", "\u202e", "\x1b[2J", "x" * 300, "é", "e\u0301",
                              "/", "//", "./"])
NAMES = st.lists(NAME_PARTS, min_size=1, max_size=6).map("/".join)
TYPES = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                         tarfile.FIFOTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE])
MEMBERS = st.lists(st.tuples(NAMES, TYPES, st.binary(max_size=64), st.text(max_size=20)), max_size=12)


def build_tar(members, gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.CONTTYPE) else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buf.getvalue()


def snapshot_tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


@given(members=MEMBERS, gz=st.booleans(), cut=st.one_of(st.none(), st.integers(min_value=0, max_value=4096)))
@example(members=[("airlock/acme/metadata/../../x", tarfile.REGTYPE, b"x", "")], gz=False, cut=None)
@example(members=[("acme/targets/fw", tarfile.SYMTYPE, b"", "/etc")], gz=True, cut=None)
def test_scanning_any_archive_is_safe(members, gz, cut):
    with tempfile.TemporaryDirectory(prefix="airlock-fuzz-") as tmp:
        tmp = Path(tmp)
        archive = tmp / "outside" / "bundle.tar"
        archive.parent.mkdir()
        data = build_tar(members, gz)
        archive.write_bytes(data if cut is None else data[:cut])
        before = snapshot_tree(tmp)
        staging = tmp / "staging"
        try:
            staged = scan_bundle(archive, staging, limits=BundleLimits(max_files=50, max_seconds=20))
            assert staged.metadata or staged.targets
        except AirlockError:
            pass
        written = snapshot_tree(tmp) - before
        assert all(p.startswith(str(staging)) for p in written), written


REPO = RepoSim("acme")
REPO.add_target("fw/a.bin", b"A" * 10)
REPO.publish()
ROLE_FILES = ["timestamp.json", f"{REPO.snapshot.signed.version}.snapshot.json",
              f"{REPO.targets.signed.version}.targets.json"]


@given(which=st.sampled_from(ROLE_FILES),
       edits=st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.binary(min_size=0, max_size=3),
                                st.integers(min_value=0, max_value=3)), min_size=1, max_size=4))
@example(which="timestamp.json", edits=[(10, b'"', 1)])
def test_verifying_any_mutation_of_signed_metadata_is_safe(which, edits):
    from tuf.api.metadata import Metadata

    original = REPO.metadata[which]
    data = bytearray(original)
    for pos, insert, delete in edits:
        pos = min(pos, len(data))
        data[pos:pos + delete] = insert
    data = bytes(data)
    with tempfile.TemporaryDirectory(prefix="airlock-fuzz-") as tmp:
        media = REPO.write_bundle(Path(tmp) / "usb")
        (media / "airlock/acme/metadata" / which).write_bytes(data)
        staged = scan_bundle(media, Path(tmp) / "staging")
        trust = lambda name: (TrustedState(root=REPO.first_root()), lambda *a: None, lambda *a: None)  # noqa: E731
        try:
            verify_staged_bundle(staged, trust)
        except AirlockError:
            return
        # accepted: the mutation must not have changed what was signed
        assert Metadata.from_bytes(data).signed_bytes == Metadata.from_bytes(original).signed_bytes
        shutil.rmtree(Path(tmp) / "staging", ignore_errors=True)
