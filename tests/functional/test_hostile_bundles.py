"""Hostile bundles at the TUF level, built by the simulator with real keys and
real signatures: each is refused with a clear reason and changes nothing;
the legitimate edge cases next to them (expired intermediate root,
fast-forward recovery by key rotation) are accepted."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import Signature, SSlibKey
from tuf.api.metadata import Metadata, MetaFile

from signing.exceptions import VerificationError
from signing.report import verify_bundle
from signing.verify import VerifierLimits
from tests.conftest import pin, refused


@pytest.fixture
def served(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 100)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "good")).code == 0
    return sim


def past():
    return (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)


def bump_root(sim, extra=()):
    sim.root.signed.version += 1
    sim.sign_and_store("root", extra=extra)


def test_root_version_skipped(airlock, served, home, tmp_path):
    """3.root.json without 2.root.json: the chain stops at 1 (as a client's
    would), so the timestamp signed by v3's new key does not verify."""
    served.rotate("timestamp")  # v2
    served.rotate("timestamp")  # v3
    del served.metadata["2.root.json"]
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "timestamp.json", "signature")
    assert not (home / "public/repos/acme/metadata/3.root.json").exists()


def test_new_root_signed_only_by_old_keys(airlock, served, home, tmp_path):
    old = list(served.signers["root"])
    served.rotate("root")
    served.metadata["2.root.json"] = served.sign(served.root, old)  # without the new key's signature
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "2.root.json", "signature")


def _refused_with_limits(sim, media, limits: VerifierLimits) -> str:
    """Verify with the appliance's own verifier, but lower limits (the
    defaults would need thousands of roles); returns the refusal."""
    with pytest.raises(VerificationError) as info:
        verify_bundle(media, {sim.name: sim.first_root()}, limits=limits)
    return str(info.value)


def test_long_chain_of_roots_stops_at_the_limit(served, tmp_path):
    for _ in range(21):
        bump_root(served)
    served.publish(roles=())
    media = served.write_bundle(tmp_path / "bad")
    reason = _refused_with_limits(served, media, VerifierLimits(max_root_rotations=20))
    assert "22.root.json: more than 20 root versions in one bundle" in reason  # roots 2..22 are new
    verify_bundle(media, {"acme": served.first_root()}, limits=VerifierLimits(max_root_rotations=21))


def test_default_root_rotation_limit_is_ngclients():
    assert VerifierLimits().max_root_rotations == 256
    assert VerifierLimits().max_delegations == 10_000


def test_expired_intermediate_root_is_fine(airlock, served, home, tmp_path):
    served.root.signed.expires = past()
    bump_root(served)  # v2 expired
    served.root.signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=300)
    bump_root(served)  # v3 valid
    served.publish(roles=())
    r = airlock("import", served.write_bundle(tmp_path / "ok"))
    assert r.code == 0, r.err
    assert (home / "public/repos/acme/metadata/2.root.json").exists()


def test_duplicate_signatures_of_one_key(airlock, served, home, tmp_path):
    served.root.signed.roles["targets"].threshold = 2
    served.add_key("targets")
    bump_root(served)
    served.add_target("fw/b.bin", b"B")
    served.publish()
    name = f"{served.targets.signed.version}.targets.json"
    doc = json.loads(served.metadata[name])
    first = served.signers["targets"][0].public_key.keyid
    sig = next(s for s in doc["signatures"] if s["keyid"] == first)
    doc["signatures"] = [sig, dict(sig)]  # the same key's signature twice, the second key's dropped
    served.metadata[name] = json.dumps(doc).encode()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), name)


def test_one_key_under_two_key_ids(airlock, served, home, tmp_path):
    key = served.signers["timestamp"][0].public_key
    alias = SSlibKey("ab" * 32, key.keytype, key.scheme, key.keyval)
    served.root.signed.keys[alias.keyid] = alias
    served.root.signed.roles["timestamp"].keyids.append(alias.keyid)
    served.root.signed.roles["timestamp"].threshold = 2
    bump_root(served)
    served.publish(roles=())
    md = Metadata.from_bytes(served.metadata["timestamp.json"])
    md.signatures[alias.keyid] = Signature(alias.keyid, md.signatures[key.keyid].signature)
    served.metadata["timestamp.json"] = md.to_bytes()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "2.root.json", "one key under two key ids")


def test_delegated_role_missing_from_new_snapshot(airlock, served, home, tmp_path):
    served.delegate("plc-x", ["plc-x/*"])
    served.add_target("plc-x/fw.bin", b"X", role="plc-x")
    served.publish(("targets", "plc-x"))
    assert airlock("import", served.write_bundle(tmp_path / "ok")).code == 0
    del served.snapshot.signed.meta["plc-x.json"]
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "snapshot.json", "plc-x.json")


def test_delegation_cycle(airlock, served, home, tmp_path):
    served.delegate("a", ["fw/*"])
    served.delegate("b", ["fw/*"], parent="a")
    # b delegates back to a, with a's own key
    from tuf.api.metadata import DelegatedRole, Delegations
    b = served.delegated["b"].signed
    b.delegations = Delegations(keys={}, roles={})
    b.delegations.roles["a"] = DelegatedRole(name="a", keyids=[], threshold=1, terminating=False, paths=["fw/*"])
    b.add_key(served.signers["a"][0].public_key, "a")
    served.publish(("targets", "a", "b"))
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "delegation cycle a -> b -> a")


def test_too_many_delegations(served, tmp_path):
    for i in range(6):
        served.delegate(f"r{i}", [f"r{i}/*"])
    served.publish(("targets", *[f"r{i}" for i in range(6)]))
    media = served.write_bundle(tmp_path / "bad")
    reason = _refused_with_limits(served, media, VerifierLimits(max_delegations=5))
    assert "more than 5 delegations" in reason
    verify_bundle(media, {"acme": served.first_root()}, limits=VerifierLimits(max_delegations=6))


def test_delegated_role_signing_outside_its_paths(airlock, served, home, tmp_path):
    """Valid TUF that no client trusts: imported, but the target is never
    served, offered nor released (tests/functional/test_client_parity.py
    shows python-tuf finds nothing there either)."""
    served.delegate("plc-x", ["plc-x/*"])
    served.add_target("gateway/evil.bin", b"E", role="plc-x")
    served.publish(("targets", "plc-x"))
    r = airlock("import", served.write_bundle(tmp_path / "bad"))
    assert r.code == 0, r.err
    assert "ignored target 'gateway/evil.bin' listed by 'plc-x': outside the paths delegated" in r.out
    assert not list((home / "public/repos/acme/targets").rglob("*evil.bin"))
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert "gateway/evil.bin" not in [t["path"] for t in shown["targets"]]
    assert [t["path"] for t in shown["ignored"]] == ["gateway/evil.bin"]
    approve = airlock("releases", "approve", "acme", "gateway/evil.bin", "--hardware", "plc-x")
    assert approve.code == 1 and "no device finds it there" in approve.err


def test_only_unknown_hash_algorithms(airlock, served, home, tmp_path):
    tf = served.add_target("fw/b.bin", b"B" * 10)
    tf.hashes = {"md6-512": "00" * 64}
    served.publish()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "hash algorithm 'md6-512'")


def test_oversized_timestamp_is_stopped_at_its_cap(airlock, served, home, tmp_path):
    served.timestamp.signed.unrecognized_fields["padding"] = "x" * 20_000
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "timestamp.json", "16384-byte limit")


def test_huge_metadata_file_is_stopped_while_reading(airlock, served, home, tmp_path):
    media = served.write_bundle(tmp_path / "bad")
    with open(media / "airlock/acme/metadata/9.targets.json", "wb") as f:
        f.truncate(40 << 20)  # sparse: reading it all would take a while, and it is never needed
    refused(airlock, home, media, "9.targets.json", "longer than")


def test_name_and_content_versions_differ(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    v = served.targets.signed.version
    served.metadata[f"{v}.targets.json"], served.metadata[f"{v - 1}.targets.json"] = (
        served.metadata[f"{v - 1}.targets.json"], served.metadata[f"{v}.targets.json"])
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), f"{v}.targets.json")


def test_duplicate_json_keys(airlock, served, home, tmp_path):
    served.publish(roles=())
    doc = served.metadata["timestamp.json"].decode()
    # a second "version" key: python keeps the last, other parsers the first
    tampered = doc.replace('"_type": "timestamp",', '"_type": "timestamp", "version": 999,', 1)
    assert tampered != doc
    served.metadata["timestamp.json"] = tampered.encode()
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "appears twice")


def test_fast_forward_attack_and_recovery_by_rotation(airlock, served, home, tmp_path):
    # the timestamp key leaked: an attacker (holding it) fast-forwards to v1000
    served.timestamp.signed.version = 999
    served.publish(roles=())
    assert airlock("import", served.write_bundle(tmp_path / "ff")).code == 0
    # the vendor cannot go back to a sane version with the same key...
    served.timestamp.signed.version = 5
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "stuck"), "rollback")
    # ...but recovers by rotating the timestamp key in a new root
    served.rotate("timestamp")
    served.timestamp.signed.version = 5
    served.publish(roles=())
    r = airlock("import", served.write_bundle(tmp_path / "recovered"))
    assert r.code == 0, r.err
    assert Metadata.from_bytes((home / "public/repos/acme/metadata/timestamp.json").read_bytes()).signed.version == 6


def test_snapshot_points_at_an_older_targets_mix_and_match(airlock, served, home, tmp_path):
    served.add_target("fw/b.bin", b"B")
    served.publish()
    assert airlock("import", served.write_bundle(tmp_path / "ok")).code == 0
    # a new snapshot that points at the previous targets version
    served.snapshot.signed.meta["targets.json"] = MetaFile(version=served.targets.signed.version - 1)
    served.publish(roles=())
    refused(airlock, home, served.write_bundle(tmp_path / "bad"), "rollback")
