"""Pins the part of python-tuf's *internal* API that signing/verify.py drives:
``tuf.ngclient._internal.trusted_metadata_set.TrustedMetadataSet``.

It is not a public API, so a new tuf release may change it without notice;
this test is that notice.  If it fails after an upgrade, read the new
``TrustedMetadataSet`` and adapt ``signing/verify.py`` (each check below
names what the verifier relies on) before changing this file.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import MetaFile, Root, Snapshot, Targets, Timestamp
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from tests.support.simulator import RepoSim


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_signatures_the_verifier_calls():
    empty = inspect.Parameter.empty
    assert _params(TrustedMetadataSet.__init__) == [("self", empty), ("root_data", empty), ("envelope_type", empty)]
    assert _params(TrustedMetadataSet.update_root) == [("self", empty), ("data", empty)]
    assert _params(TrustedMetadataSet.update_timestamp) == [("self", empty), ("data", empty)]
    assert _params(TrustedMetadataSet.update_snapshot) == [("self", empty), ("data", empty), ("trusted", False)]
    assert _params(TrustedMetadataSet.update_delegated_targets) == [
        ("self", empty), ("data", empty), ("role_name", empty), ("delegator_name", empty)]
    for name in ("root", "timestamp", "snapshot"):
        assert isinstance(inspect.getattr_static(TrustedMetadataSet, name), property), name
    assert EnvelopeType.METADATA is not None


def test_the_errors_the_verifier_translates_are_repository_errors():
    for error in (tuf_exceptions.UnsignedMetadataError, tuf_exceptions.ExpiredMetadataError,
                  tuf_exceptions.BadVersionNumberError, tuf_exceptions.LengthOrHashMismatchError):
        assert issubclass(error, tuf_exceptions.RepositoryError), error
    # verify.py catches the equal-version case first, then any RepositoryError
    assert issubclass(tuf_exceptions.EqualVersionNumberError, tuf_exceptions.BadVersionNumberError)


@pytest.fixture
def sim() -> RepoSim:
    s = RepoSim("acme")
    s.delegate("plc-x", ["plc-x/*"])
    s.add_target("plc-x/fw.bin", b"X" * 10, role="plc-x")
    s.publish(("targets", "plc-x"))
    return s


def _fresh(sim: RepoSim) -> TrustedMetadataSet:
    tset = TrustedMetadataSet(sim.first_root(), EnvelopeType.METADATA)
    assert isinstance(tset.root, Root) and tset.root.version == 1
    return tset


def _snapshot(sim: RepoSim) -> bytes:
    return sim.metadata[f"{sim.snapshot.signed.version}.snapshot.json"]


def test_the_client_order_and_what_each_step_returns(sim):
    tset = _fresh(sim)
    assert isinstance(tset.update_timestamp(sim.metadata["timestamp.json"]), Timestamp)
    assert tset.timestamp.snapshot_meta.version == sim.snapshot.signed.version
    assert isinstance(tset.update_snapshot(_snapshot(sim)), Snapshot)
    assert tset.snapshot.meta["plc-x.json"].version == 1
    top = tset.update_delegated_targets(sim.metadata[f"{sim.targets.signed.version}.targets.json"], "targets", "root")
    assert isinstance(top, Targets)
    plc = tset.update_delegated_targets(sim.metadata["1.plc-x.json"], "plc-x", "targets")
    assert "plc-x/fw.bin" in plc.targets
    with pytest.raises(RuntimeError):  # the verifier walks roots strictly before the timestamp
        tset.update_root(sim.published_root_bytes)


def test_root_chain_one_version_at_a_time(sim):
    sim.rotate("timestamp")
    tset = _fresh(sim)
    assert tset.update_root(sim.metadata["2.root.json"]).version == 2
    with pytest.raises(tuf_exceptions.BadVersionNumberError):
        tset.update_root(sim.metadata["2.root.json"])


def test_a_timestamp_signed_by_an_old_key_is_unsigned(sim):
    sim.rotate("timestamp")
    sim.publish(roles=())
    with pytest.raises(tuf_exceptions.UnsignedMetadataError):
        _fresh(sim).update_timestamp(sim.metadata["timestamp.json"])


def test_equal_timestamp_version_and_expired_timestamp_kept_for_rollback_checks(sim):
    tset = _fresh(sim)
    tset.update_timestamp(sim.metadata["timestamp.json"])
    with pytest.raises(tuf_exceptions.EqualVersionNumberError):
        tset.update_timestamp(sim.metadata["timestamp.json"])

    sim.timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.publish(roles=())
    tset = _fresh(sim)
    with pytest.raises(tuf_exceptions.ExpiredMetadataError):
        tset.update_timestamp(sim.metadata["timestamp.json"])
    # loaded all the same: verify.py reads its version and expiry after the error
    assert tset.timestamp.version == sim.timestamp.signed.version


def test_reference_time_decides_expiry(sim):
    sim.timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.publish(roles=())
    tset = _fresh(sim)
    tset.reference_time = datetime.now(UTC) - timedelta(days=2)
    tset.update_timestamp(sim.metadata["timestamp.json"])  # not expired at that time


def test_snapshot_trusted_copy_skips_the_timestamp_hashes_and_expired_is_stored(sim):
    sim.timestamp.signed.snapshot_meta = MetaFile(version=sim.snapshot.signed.version, length=1)
    sim.resign("timestamp")
    tset = _fresh(sim)
    tset.update_timestamp(sim.metadata["timestamp.json"])
    with pytest.raises(tuf_exceptions.LengthOrHashMismatchError):
        tset.update_snapshot(_snapshot(sim))
    assert tset.update_snapshot(_snapshot(sim), trusted=True).version == sim.snapshot.signed.version

    fresh = RepoSim("acme")
    fresh.snapshot.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    fresh.publish()
    tset = _fresh(fresh)
    tset.update_timestamp(fresh.metadata["timestamp.json"])
    with pytest.raises(tuf_exceptions.ExpiredMetadataError):
        tset.update_snapshot(_snapshot(fresh))
    assert tset.snapshot.version == fresh.snapshot.signed.version


def test_delegated_role_missing_from_the_snapshot_and_expired_role(sim):
    tset = _fresh(sim)
    tset.update_timestamp(sim.metadata["timestamp.json"])
    tset.update_snapshot(_snapshot(sim))
    tset.update_delegated_targets(sim.metadata[f"{sim.targets.signed.version}.targets.json"], "targets", "root")
    with pytest.raises(tuf_exceptions.RepositoryError):
        tset.update_delegated_targets(sim.metadata["1.plc-x.json"], "not-in-snapshot", "targets")

    sim.delegated["plc-x"].signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.publish(("plc-x",))
    tset = _fresh(sim)
    tset.update_timestamp(sim.metadata["timestamp.json"])
    tset.update_snapshot(_snapshot(sim))
    tset.update_delegated_targets(sim.metadata[f"{sim.targets.signed.version}.targets.json"], "targets", "root")
    with pytest.raises(tuf_exceptions.ExpiredMetadataError):
        tset.update_delegated_targets(sim.metadata["2.plc-x.json"], "plc-x", "targets")


def test_an_expired_delegated_role_is_refused_only_after_every_other_check(sim):
    """verify.py publishes an expired delegated role as *unavailable* when
    the ExpiredMetadataError is all python-tuf has against it: expiry must
    be its last check (a bad signature or version must still win)."""
    sim.delegated["plc-x"].signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.publish(("plc-x",))
    tset = _fresh(sim)
    tset.update_timestamp(sim.metadata["timestamp.json"])
    tset.update_snapshot(_snapshot(sim))
    tset.update_delegated_targets(sim.metadata[f"{sim.targets.signed.version}.targets.json"], "targets", "root")
    with pytest.raises(tuf_exceptions.ExpiredMetadataError):
        tset.update_delegated_targets(sim.metadata["2.plc-x.json"], "plc-x", "targets")
    with pytest.raises(tuf_exceptions.BadVersionNumberError):  # v1 while the snapshot says v2: version first
        tset.update_delegated_targets(sim.metadata["1.plc-x.json"], "plc-x", "targets")
    sim.delegated["plc-x"].signed.version = 2
    sim.resign("plc-x", signers=[sim.signers["targets"][0]])  # expired and signed by the wrong key
    with pytest.raises(tuf_exceptions.UnsignedMetadataError):
        tset.update_delegated_targets(sim.metadata["2.plc-x.json"], "plc-x", "targets")
