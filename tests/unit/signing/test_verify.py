"""verify_repository (signing/verify.py), step by step, with lookups over the
simulator's real signed metadata instead of a staged bundle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signing.exceptions import VerificationError
from signing.verify import (
    TrustedState,
    VerifiedRepository,
    VerifierLimits,
    verify_repository,
)
from tests.support.simulator import RepoSim


def _lookup(files: dict[str, bytes]):
    def metadata(filename: str, cap: int) -> bytes | None:
        data = files.get(filename)
        if data is not None and len(data) > cap:
            raise VerificationError(f"{filename}: {len(data)} bytes is over the {cap}-byte limit")
        return data
    return metadata


def _nothing(*_args) -> None:
    return None


def verify(sim: RepoSim, trusted: TrustedState | None = None, *, store: dict[str, bytes] | None = None,
           targets: dict[str, bytes] | None = None, **kwargs) -> VerifiedRepository:
    files = sim.target_files if targets is None else targets
    return verify_repository(
        sim.name, trusted or TrustedState(root=sim.first_root()), _lookup(sim.metadata), _lookup(store or {}),
        lambda rel: len(files[rel]) if rel in files else None, _nothing, **kwargs)


@pytest.fixture
def sim() -> RepoSim:
    s = RepoSim("acme")
    s.delegate("plc-x", ["plc-x/*"])
    s.add_target("plc-x/fw.bin", b"X" * 10, role="plc-x")
    s.add_target("docs/readme.txt", b"read me")
    s.publish(("targets", "plc-x"))
    return s


def test_first_verification_reads_every_role_and_lists_every_target(sim):
    v = verify(sim)
    assert not v.unchanged
    assert v.versions_before == {"root": 1}
    snap = sim.snapshot.signed.version
    assert v.versions_after == {"root": 1, "timestamp": sim.timestamp.signed.version, "snapshot": snap,
                                "targets": sim.targets.signed.version, "plc-x": 1}
    assert v.current["snapshot"] == f"{snap}.snapshot.json" and v.current["plc-x"] == "1.plc-x.json"
    # every file the new tree adds: the current version of each role, none of the older ones
    assert set(v.metadata) == {"1.root.json", "timestamp.json", f"{snap}.snapshot.json",
                               f"{sim.targets.signed.version}.targets.json", "1.plc-x.json"}
    assert [r.name for r in v.roles] == ["root", "timestamp", "snapshot", "targets", "plc-x"]
    assert {t.path: t.role for t in v.targets} == {"plc-x/fw.bin": "plc-x", "docs/readme.txt": "targets"}
    assert all(t.bundle_relpath for t in v.targets)
    assert v.targets_added == ["docs/readme.txt", "plc-x/fw.bin"]


def test_same_timestamp_as_trusted_is_unchanged(sim):
    trusted = TrustedState(root=sim.first_root(), roles={"timestamp": sim.metadata["timestamp.json"]})
    v = verify(sim, trusted)
    assert v.unchanged and v.metadata == {} and v.targets == []


def test_root_chain_stops_at_the_limit_given(sim):
    for _ in range(3):
        sim.rotate("timestamp")
    sim.publish(roles=())
    with pytest.raises(VerificationError, match=r"4\.root\.json: more than 2 root versions in one bundle"):
        verify(sim, limits=VerifierLimits(max_root_rotations=2))
    assert verify(sim, limits=VerifierLimits(max_root_rotations=3)).versions_after["root"] == 4


def test_delegation_limit_given(sim):
    with pytest.raises(VerificationError, match="more than 0 delegations"):
        verify(sim, limits=VerifierLimits(max_delegations=0))


def test_metadata_length_limits_given(sim):
    with pytest.raises(VerificationError, match="timestamp.json"):
        verify(sim, limits=VerifierLimits(timestamp_max_length=100))


def test_final_root_expired_is_refused_at_the_root_step(sim):
    sim.root.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sim.root.signed.version += 1
    sim.sign_and_store("root")
    with pytest.raises(VerificationError, match=r"2\.root\.json: the final root expired on"):
        verify(sim)


def test_a_reused_version_number_with_other_content_is_refused(sim):
    name = f"{sim.snapshot.signed.version}.snapshot.json"
    store = {name: sim.metadata[name]}
    sim.snapshot.signed.expires += timedelta(days=1)
    sim.resign("snapshot")  # same version, other content
    with pytest.raises(VerificationError, match="a version number was reused"):
        verify(sim, store=store)


def test_expired_delegated_role_is_unavailable_naming_its_expiry(sim):
    """A client's refresh works, and only its lookups through the expired
    role fail: the role is published (it is genuine) but unavailable."""
    expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    sim.delegated["plc-x"].signed.expires = expires
    sim.publish(("plc-x",))
    v = verify(sim)
    assert v.unavailable_roles == {"plc-x": f"expired on {expires:%Y-%m-%d %H:%M:%S} UTC"}
    assert v.current["plc-x"] == "2.plc-x.json" and "2.plc-x.json" in v.metadata
    assert [t.path for t in v.targets] == ["docs/readme.txt"]
    assert [(t.path, t.state) for t in v.skipped] == [("plc-x/fw.bin", "unavailable")]
    assert "stops at role 'plc-x', which expired on" in v.skipped[0].why


def test_expired_top_level_targets_is_still_refused(sim):
    sim.targets.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    sim.publish(("targets",))
    with pytest.raises(VerificationError, match=r"targets\.json: expired on"):
        verify(sim)


def test_missing_target_refused_unless_absent_targets_are_held(sim):
    with pytest.raises(VerificationError, match="neither in the bundle nor already on the appliance"):
        verify(sim, targets={})
    v = verify(sim, targets={}, absent_targets_held=True)
    assert [t.bundle_relpath for t in v.targets] == [None, None]


def test_target_of_wrong_length_in_the_bundle_is_refused(sim):
    files = {rel: data + b"!" for rel, data in sim.target_files.items()}
    with pytest.raises(VerificationError, match="bytes but"):
        verify(sim, targets=files, absent_targets_held=True)


def test_airlock_sign_verify_names_ignored_targets_and_unavailable_roles(sim, tmp_path):
    from signing.report import verify_bundle

    sim.delegate("plc-x", ["plc-x/*"])
    sim.delegate("gone", ["gone/*"])
    sim.add_target("gateway/evil.bin", b"E", role="plc-x")
    sim.add_target("plc-x/fw.bin", b"X", role="plc-x")
    sim.publish(("targets", "plc-x"))  # "gone" is never published: the snapshot does not list it
    report = verify_bundle(sim.write_bundle(tmp_path / "usb"), {"acme": sim.first_root()})
    text = report.render()
    assert "ignored target 'gateway/evil.bin' listed by 'plc-x': outside the paths delegated to 'plc-x'" in text
    assert "role 'gone' is unavailable: it is not listed in the snapshot" in text
    repo = report.to_dict()["repositories"][0]
    assert "plc-x/fw.bin" in [t["path"] for t in repo["targets"]]
    assert "gateway/evil.bin" not in [t["path"] for t in repo["targets"]]
    assert [(t["path"], t["state"]) for t in repo["skipped_targets"]] == [("gateway/evil.bin", "ignored")]
    assert repo["unavailable_roles"] == {"gone": "is not listed in the snapshot"}
