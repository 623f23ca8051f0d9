"""signing.lookup against python-tuf's own client on generated delegation
graphs: for every target every role lists, the verifier's verdict
(available / unavailable / ignored) is what ngclient's ``get_targetinfo``
gives (that entry / an error / anything else).  Graphs mix chains, shared
roles, terminating delegations, ``*`` and ``?`` patterns, case, hash
prefixes, roles the snapshot does not list and expired roles."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import DelegatedRole

from signing.lookup import AVAILABLE, IGNORED, UNAVAILABLE, client_lookup
from signing.report import verify_bundle
from tests.support.simulator import RepoSim

PATTERNS = ["a/*", "a/b/*", "b/?.bin", "*", "a/*/c.bin", "A/*", "*.bin", "b/*"]
PATHS = ["a/x.bin", "a/b/y.bin", "b/1.bin", "b/12.bin", "a/q/c.bin", "A/x.bin", "c.bin", "z/z.bin"]


def build(rng: random.Random) -> RepoSim:
    sim = RepoSim("acme")
    roles = [f"r{i}" for i in range(rng.randint(3, 7))]
    published = []
    for i, role in enumerate(roles):
        parent = rng.choice(["targets", *roles[:i]])
        sim.delegate(role, rng.sample(PATTERNS, rng.randint(1, 2)), parent=parent)
        parent_md = sim.targets if parent == "targets" else sim.delegated[parent]
        delegation = parent_md.signed.delegations.roles[role]
        delegation.terminating = rng.random() < 0.25
        if rng.random() < 0.2:  # hash bins instead of paths
            parent_md.signed.delegations.roles[role] = DelegatedRole(
                name=role, keyids=delegation.keyids, threshold=1, terminating=delegation.terminating,
                path_hash_prefixes=[rng.choice("0123456789abcdef") for _ in range(4)])
        if rng.random() < 0.15:
            continue  # never published: the snapshot does not list it
        if rng.random() < 0.15:
            sim.delegated[role].signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        published.append(role)
    for role in ("targets", *roles):
        for path in rng.sample(PATHS, rng.randint(0, 3)):
            sim.add_target(path, f"{role} {path}".encode(), role=role)
    sim.publish(("targets", *published))
    return sim


@pytest.mark.parametrize("seed", range(24))
def test_verdicts_match_python_tuf(seed, tmp_path, tuf_client):
    sim = build(random.Random(seed))
    media = sim.write_bundle(tmp_path / "usb")
    repo = verify_bundle(media, {"acme": sim.first_root()}).repositories[0]
    ours = {(t.path, t.role): AVAILABLE for t in repo.targets}
    ours.update({(s.path, s.role): s.state for s in repo.skipped})

    updater = tuf_client(media / "airlock" / "acme", sim.first_root())
    updater.refresh()
    theirs = {}
    for role, md in [("targets", sim.targets), *sim.delegated.items()]:
        for path, entry in md.signed.targets.items():
            try:
                found = updater.get_targetinfo(path)
            except tuf_exceptions.RepositoryError:
                theirs[(path, role)] = UNAVAILABLE
                continue
            theirs[(path, role)] = AVAILABLE if found == entry else IGNORED
    # roles the verifier could not load (unlisted, or below one it could not) are unknown to it: the client
    # never takes an entry of theirs either
    assert {k: v for k, v in theirs.items() if k not in ours and v == AVAILABLE} == {}
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert set(ours) <= set(theirs)


def test_lookup_stops_at_the_delegation_budget():
    sim = RepoSim("acme")
    parent = "targets"
    for i in range(40):  # a chain longer than a client will follow
        sim.delegate(f"c{i}", ["deep/*"], parent=parent)
        parent = f"c{i}"
    sim.add_target("deep/fw.bin", b"D", role="c39")
    roles = {"targets": sim.targets.signed, **{n: md.signed for n, md in sim.delegated.items()}}
    assert client_lookup("deep/fw.bin", roles).exhausted
    assert client_lookup("deep/fw.bin", roles, max_delegations=64).role == "c39"
