"""The import accepts what a conformant TUF client accepts, and serves what
it would find (issue 14): each repository is built with python-tuf's own
models and signed with real keys, imported with the real CLI, and read back
by python-tuf's ngclient ``Updater`` from the published tree; for every
listed target the appliance's verdict (``repo show``, release approval)
is the client's."""

from __future__ import annotations

import hashlib
import itertools
import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import DelegatedRole
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from tests.conftest import pin

_clients = itertools.count()


class TreeFetcher(FetcherInterface):
    """``http://repo/metadata/...`` and ``.../targets/...`` from a folder, as
    a static web server would serve it (404 for anything missing)."""

    BASE = "http://repo/"

    def __init__(self, folder: Path):
        self.folder = folder

    def _fetch(self, url: str) -> Iterator[bytes]:
        rel = urllib.parse.unquote(url[len(self.BASE):])
        path = self.folder / rel
        if not url.startswith(self.BASE) or ".." in rel.split("/") or not path.is_file():
            raise tuf_exceptions.DownloadHTTPError(f"{rel} not found", 404)
        return iter([path.read_bytes()])


def client(tmp_path: Path, folder: Path, bootstrap: bytes | None, meta_dir: Path | None = None) -> Updater:
    """A device: ngclient reading the tree ``folder`` (metadata/, targets/)."""
    n = next(_clients)
    meta_dir = meta_dir or tmp_path / f"device-{n}" / "metadata"
    meta_dir.mkdir(parents=True, exist_ok=True)
    (tmp_path / f"device-{n}" / "targets").mkdir(parents=True, exist_ok=True)
    return Updater(str(meta_dir), TreeFetcher.BASE + "metadata/", str(tmp_path / f"device-{n}" / "targets"),
                   TreeFetcher.BASE + "targets/", fetcher=TreeFetcher(folder), bootstrap=bootstrap)


def client_verdict(updater: Updater, path: str) -> str:
    """'available', 'unavailable' (the lookup fails) or 'absent' (the client
    finds nothing), as a device would see ``path``."""
    try:
        info = updater.get_targetinfo(path)
    except tuf_exceptions.RepositoryError:
        return "unavailable"
    if info is None:
        return "absent"
    Path(updater.download_target(info)).read_bytes()  # and it can be fetched
    return "available"


def appliance_verdicts(airlock) -> dict[str, str]:
    """path -> 'available' / 'unavailable' / 'absent' from `repo show --json`."""
    r = airlock("repo", "show", "acme", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    out = {t["path"]: "absent" for t in report["ignored"]}
    out.update({t["path"]: "unavailable" for t in report["unavailable"]})
    out.update({t["path"]: "available" for t in report["targets"]})
    return out


def tufjs_verdicts(home: Path, sim, tmp_path: Path, paths) -> dict[str, str]:
    """path -> 'available' / 'unavailable' / 'absent' as tuf-js, another
    client, sees each over a real `airlock serve`."""
    from tests.support.server import airlock_server
    from tests.support.tufjs import fetch_with_tufjs

    root = tmp_path / "tufjs-1.root.json"
    root.write_bytes(sim.first_root())
    out = {}
    with airlock_server(home) as base:
        for n, path in enumerate(paths):
            result = fetch_with_tufjs(root, tmp_path / f"tufjs-meta-{n}", f"{base}/repos/acme", path,
                                      tmp_path / f"tufjs-dl-{n}")
            out[path] = ("available" if result["ok"] else
                         "absent" if result["error"] == f"no target {path}" else "unavailable")
    return out


def published_tree(home: Path) -> Path:
    return home / "public" / "repos" / "acme"


@pytest.fixture
def pinned(airlock, sim, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    return sim


def import_ok(airlock, sim, media: Path) -> str:
    r = airlock("import", sim.write_bundle(media))
    assert r.code == 0, r.err
    return r.out


# 1. targets outside the delegated paths ------------------------------------------------------------------


def test_a_target_outside_the_delegated_paths_is_imported_but_ignored(airlock, pinned, home, tmp_path):
    sim = pinned
    sim.delegate("plc-x", ["plc-x/*"])
    sim.add_target("plc-x/fw-2.0.0.bin", b"X" * 100, role="plc-x", version="2.0.0")
    sim.add_target("gateway/evil.bin", b"E" * 10, role="plc-x")
    sim.publish(("targets", "plc-x"))
    evil_file = next(rel for rel in sim.target_files if rel.endswith(".evil.bin"))
    del sim.target_files[evil_file]  # not required: no client would fetch it through plc-x
    out = import_ok(airlock, sim, tmp_path / "usb")
    assert "ignored target 'gateway/evil.bin' listed by 'plc-x': outside the paths delegated to 'plc-x'" in out

    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    assert client_verdict(updater, "gateway/evil.bin") == "absent"
    assert client_verdict(updater, "plc-x/fw-2.0.0.bin") == "available"
    assert appliance_verdicts(airlock) == {"gateway/evil.bin": "absent", "plc-x/fw-2.0.0.bin": "available"}

    shown = airlock("repo", "show", "acme").out
    assert "ignored targets (listed, but no client finds them there): 1" in shown
    assert "  gateway/evil.bin  (plc-x): outside the paths delegated to 'plc-x'" in shown
    refused = airlock("releases", "approve", "acme", "gateway/evil.bin", "--hardware", "plc-x")
    assert refused.code == 1
    assert "'plc-x' lists it, but no device finds it there (outside the paths delegated" in refused.err
    assert airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x").code == 0
    history = airlock("repo", "show", "acme").out
    assert "ignored: gateway/evil.bin (plc-x): outside the paths delegated to 'plc-x'" in history


def test_delegation_walk_matches_python_tuf(airlock, pinned, home, tmp_path):
    """Chains, terminating delegations, hash prefixes, ``*`` and ``?`` that
    never match ``/``, case: every listed target's verdict is the client's."""
    sim = pinned
    sim.delegate("b", ["fw/b/*"])
    sim.delegate("c", ["other/*"], parent="b")  # C's paths lie outside B's: unreachable
    sim.delegate("term", ["t/*"])
    sim.targets.signed.delegations.roles["term"].terminating = True
    sim.delegate("after-term", ["t/*"])  # never reached for t/*: the terminating one stops the walk
    sim.delegate("wild", ["w/?.bin", "w/*/deep.bin"])
    hashed = "h/hashed.bin"
    prefix = hashlib.sha256(hashed.encode()).hexdigest()[:2]
    sim.delegate("bins", [])
    sim.targets.signed.delegations.roles["bins"] = DelegatedRole(
        name="bins", keyids=sim.targets.signed.delegations.roles["bins"].keyids, threshold=1, terminating=False,
        path_hash_prefixes=[prefix])
    listed = {
        "fw/b/ok.bin": "b", "fw/b/c-via-b.bin": "c", "other/c.bin": "c",
        "t/in-term.bin": "term", "t/after.bin": "after-term",
        "w/a.bin": "wild", "w/ab.bin": "wild", "w/x/deep.bin": "wild", "w/x/y/deep.bin": "wild", "W/a.bin": "wild",
        hashed: "bins", "h/other-prefix.bin": "bins",
    }
    for n, (path, role) in enumerate(listed.items()):
        sim.add_target(path, f"{path} {n}".encode(), role=role)
    sim.publish(("targets", "b", "c", "term", "after-term", "wild", "bins"))
    import_ok(airlock, sim, tmp_path / "usb")

    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    expected = {path: client_verdict(updater, path) for path in listed}
    assert appliance_verdicts(airlock) == expected
    assert tufjs_verdicts(home, sim, tmp_path, listed) == expected
    # the cases above must not all be one verdict
    assert expected["fw/b/ok.bin"] == expected["t/in-term.bin"] == expected["w/a.bin"] == "available"
    assert expected["w/x/deep.bin"] == "available"
    assert expected["other/c.bin"] == expected["t/after.bin"] == expected["w/ab.bin"] == "absent"
    assert expected["w/x/y/deep.bin"] == expected["W/a.bin"] == expected["fw/b/c-via-b.bin"] == "absent"
    assert expected[hashed] == "available"
    assert expected["h/other-prefix.bin"] == ("available" if hashlib.sha256(b"h/other-prefix.bin").hexdigest()
                                              .startswith(prefix) else "absent")


# 2. a delegated role the snapshot does not list -------------------------------------------------------


def test_a_role_missing_from_the_snapshot_makes_only_its_targets_unavailable(airlock, pinned, home, tmp_path):
    sim = pinned
    sim.delegate("r1", ["a/*"])
    sim.delegate("r2", ["b/*"])
    sim.add_target("a/one.bin", b"1", role="r1")
    sim.add_target("b/two.bin", b"2", role="r2")
    sim.add_target("b/top.bin", b"T")  # found in targets before the walk reaches r2
    sim.publish(("targets", "r1", "r2"))
    del sim.snapshot.signed.meta["r2.json"]
    sim.publish(("targets",))
    out = import_ok(airlock, sim, tmp_path / "usb")
    assert "role 'r2' is unavailable: it is not listed in the snapshot" in out

    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    verdicts = {p: client_verdict(updater, p) for p in ("a/one.bin", "b/top.bin", "b/nothing.bin")}
    assert verdicts == {"a/one.bin": "available", "b/top.bin": "available", "b/nothing.bin": "unavailable"}
    assert tufjs_verdicts(home, sim, tmp_path, verdicts) == verdicts
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert shown["unavailable_roles"] == {"r2": "is not listed in the snapshot"}
    assert sorted(t["path"] for t in shown["targets"]) == ["a/one.bin", "b/top.bin"]
    refused = airlock("releases", "approve", "acme", "b/nothing.bin", "--hardware", "plc-x")
    assert "stops at role 'r2' of acme, which is not listed in the snapshot" in refused.err


# 4. a timestamp of the same version with other content -------------------------------------------------


def test_same_version_timestamp_with_other_content_is_nothing_newer(airlock, pinned, home, tmp_path):
    sim = pinned
    sim.add_target("fw/a.bin", b"A" * 100)
    sim.publish()
    import_ok(airlock, sim, tmp_path / "first")
    served = (published_tree(home) / "metadata" / "timestamp.json").read_bytes()
    device_meta = tmp_path / "device" / "metadata"
    client(tmp_path, published_tree(home), sim.first_root(), device_meta).refresh()

    version = sim.timestamp.signed.version
    sim.timestamp.signed.expires += timedelta(days=1)
    sim.resign("timestamp")  # version N again, other content
    r = airlock("import", sim.write_bundle(tmp_path / "again"))
    assert r.code == 0, r.err
    line = r.out.strip()
    assert "\n" not in line
    assert f"the bundle's timestamp version {version} differs from the trusted timestamp version {version}" in line
    assert line.endswith("nothing changed")
    assert (published_tree(home) / "metadata" / "timestamp.json").read_bytes() == served

    # a device that trusts version N refreshes against the re-signed one: no error, it keeps its own
    client(tmp_path, tmp_path / "again" / "airlock" / "acme", None, device_meta).refresh()
    assert (device_meta / "timestamp.json").read_bytes() == served
    history = airlock("repo", "show", "acme").out
    assert f"timestamp.json: the bundle's timestamp version {version} differs" in history


# 5. expired metadata and nothing new ---------------------------------------------------------------------


def _import_at(home: Path, media: Path, now: datetime):
    from appliance.importer import import_bundle
    from server import bind_database
    from server.settings import load_settings

    settings = load_settings(home)
    bind_database(settings)
    return import_bundle(settings, media, "tester", now=now)


@pytest.mark.parametrize("role", ["snapshot", "targets"])
def test_expired_metadata_with_nothing_new_is_named_and_exits_non_zero(airlock, pinned, home, tmp_path, role):
    sim = pinned
    sim.add_target("fw/a.bin", b"A" * 100)
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    (sim.snapshot if role == "snapshot" else sim.targets).signed.expires = expired
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    _import_at(home, media, expired - timedelta(days=1))  # imported while it was still valid
    filename = f"{(sim.snapshot if role == 'snapshot' else sim.targets).signed.version}.{role}.json"

    with pytest.raises(tuf_exceptions.ExpiredMetadataError):
        client(tmp_path, published_tree(home), sim.first_root()).refresh()
    r = airlock("import", media)
    assert r.code == 1
    line = r.err.strip()
    assert "\n" not in line and "already imported" not in r.out
    assert f"the served {filename} expired on {expired:%Y-%m-%d %H:%M:%S} UTC" in line
    assert "devices refuse this repository's metadata until a delivery with newer metadata" in line
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert shown["imports"][0]["status"] == "unchanged" and filename in shown["imports"][0]["reason"]
    if role == "snapshot":
        assert shown["refresh_problem"].startswith(filename)
    assert shown["targets"] == [] and [t["path"] for t in shown["unavailable"]] == ["fw/a.bin"]
    refused = airlock("releases", "approve", "acme", "fw/a.bin", "--hardware", "plc-x")
    assert refused.code == 1 and f"expired on {expired:%Y-%m-%d %H:%M:%S} UTC" in refused.err


def test_fast_forward_recovery_may_drop_a_role_the_targets_still_delegate_to(airlock, pinned, home, tmp_path):
    sim = pinned
    sim.delegate("r1", ["a/*"])
    sim.add_target("a/one.bin", b"1", role="r1")
    sim.add_target("fw/top.bin", b"T")
    sim.publish(("targets", "r1"))
    import_ok(airlock, sim, tmp_path / "first")
    # the snapshot key leaked: the vendor rotates the timestamp and snapshot keys (fast-forward
    # recovery) and starts a new snapshot line without r1
    sim.rotate("timestamp")
    sim.rotate("snapshot")
    sim.snapshot.signed.version = 0
    del sim.snapshot.signed.meta["r1.json"]
    sim.publish(("targets",))
    out = import_ok(airlock, sim, tmp_path / "recovered")
    assert "role 'r1' is unavailable: it is not listed in the snapshot" in out

    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    assert client_verdict(updater, "fw/top.bin") == "available"
    assert client_verdict(updater, "a/one.bin") == "unavailable"
    # r1's own listing is no longer trusted (nothing vouches for its version): the role is named, and a
    # lookup through it fails as the client's does
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert shown["unavailable_roles"] == {"r1": "is not listed in the snapshot"}
    assert [t["path"] for t in shown["targets"]] == ["fw/top.bin"]
    refused = airlock("releases", "approve", "acme", "a/one.bin", "--hardware", "plc-x")
    assert refused.code == 1 and "stops at role 'r1' of acme, which is not listed in the snapshot" in refused.err
    assert airlock("releases", "approve", "acme", "fw/top.bin", "--hardware", "plc-x").code == 0


# 3. role names that need quoting ------------------------------------------------------------------------

QUOTED_ROLES = {"?": "q/*", "#": "h/*", "/delegatedrole": "s/*", "../delegatedrole": "d/*", "a(b)": "p/*",
                "%41": "pct/*"}


def test_role_names_that_need_quoting_are_served_to_both_clients(airlock, pinned, home, tmp_path):
    from tests.support.server import airlock_server
    from tests.support.tufjs import fetch_with_tufjs

    sim = pinned
    for n, (role, pattern) in enumerate(QUOTED_ROLES.items()):
        sim.delegate(role, [pattern])
        sim.add_target(pattern.replace("*", f"fw-{n}.bin"), f"firmware {n}".encode(), role=role)
    sim.publish(("targets", *QUOTED_ROLES))
    out = import_ok(airlock, sim, tmp_path / "usb")
    assert "ignored" not in out and "unavailable" not in out

    metadata = published_tree(home) / "metadata"
    names = sorted(p.name for p in metadata.iterdir())
    assert all(p.is_file() and not p.name.startswith(".") for p in metadata.iterdir())
    for role in QUOTED_ROLES:
        assert f"1.{urllib.parse.quote(role, safe='')}.json" in names
    assert not (home / "public" / "repos" / "delegatedrole.json").exists()
    assert not (published_tree(home) / "delegatedrole.json").exists()

    targets = {pattern.replace("*", f"fw-{n}.bin"): f"firmware {n}".encode()
               for n, pattern in enumerate(QUOTED_ROLES.values())}
    shown = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert sorted(t["path"] for t in shown["targets"]) == sorted(targets)
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.first_root())
    with airlock_server(home) as base:
        device = tmp_path / "py-device"
        (device / "metadata").mkdir(parents=True)
        updater = Updater(str(device / "metadata"), f"{base}/repos/acme/metadata/", str(device / "targets"),
                          f"{base}/repos/acme/targets/", bootstrap=sim.first_root())
        (device / "targets").mkdir()
        updater.refresh()
        for path, data in targets.items():
            info = updater.get_targetinfo(path)
            assert info is not None, path
            assert Path(updater.download_target(info)).read_bytes() == data
        for n, (path, data) in enumerate(targets.items()):
            result = fetch_with_tufjs(root, tmp_path / f"js-meta-{n}", f"{base}/repos/acme", path,
                                      tmp_path / f"js-dl-{n}")
            assert result["ok"], (path, result)
            assert Path(result["file"]).read_bytes() == data


def test_an_expired_delegated_role_blocks_only_its_own_targets(airlock, pinned, home, tmp_path):
    """The vendor forgot to re-sign plc-x; a security patch in another role
    still comes in, as a client would fetch it."""
    sim = pinned
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.delegate("plc-x", ["plc-x/*"])
    sim.add_target("plc-x/fw.bin", b"X" * 10, role="plc-x")
    sim.delegated["plc-x"].signed.expires = expired
    sim.publish(("targets", "plc-x"))
    _import_at(home, sim.write_bundle(tmp_path / "first"), expired - timedelta(days=1))
    sim.add_target("gateway/patch.bin", b"P" * 10)
    sim.publish(("targets",))
    out = import_ok(airlock, sim, tmp_path / "patch")
    assert f"role 'plc-x' is unavailable: it expired on {expired:%Y-%m-%d %H:%M:%S} UTC" in out

    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    expected = {p: client_verdict(updater, p) for p in ("gateway/patch.bin", "plc-x/fw.bin")}
    assert expected == {"gateway/patch.bin": "available", "plc-x/fw.bin": "unavailable"}
    assert appliance_verdicts(airlock) == expected
    refused = airlock("releases", "approve", "acme", "plc-x/fw.bin", "--hardware", "plc-x")
    assert refused.code == 1 and "stops at role 'plc-x' of acme, which expired on" in refused.err
    assert airlock("releases", "approve", "acme", "gateway/patch.bin", "--hardware", "plc-x").code == 0
    assert f"role plc-x is unavailable: it expired on {expired:%Y-%m-%d %H:%M:%S} UTC" in \
        airlock("repo", "show", "acme").out


def test_targets_behind_an_expired_role_stay_held_for_its_re_signing(airlock, pinned, home, tmp_path,
                                                                      monkeypatch):
    """Superseded files go once the grace period is over; those of a role
    that is only unavailable for now stay, so that the vendor's re-signed
    role may come in an incremental bundle."""
    monkeypatch.setenv("AIRLOCK_GRACE_PERIOD", "0")
    sim = pinned
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sim.delegate("plc-x", ["plc-x/*"])
    sim.add_target("plc-x/fw.bin", b"X" * 10, role="plc-x")
    sim.delegated["plc-x"].signed.expires = expired
    sim.publish(("targets", "plc-x"))
    _import_at(home, sim.write_bundle(tmp_path / "first"), expired - timedelta(days=1))
    sim.add_target("gateway/patch.bin", b"P" * 10)
    sim.publish(("targets",))
    import_ok(airlock, sim, tmp_path / "patch")
    sim.add_target("gateway/patch-2.bin", b"Q" * 10)
    sim.publish(("targets",))
    import_ok(airlock, sim, tmp_path / "patch-2")  # the grace period (0 s) is over for the first tree
    assert list((published_tree(home) / "targets" / "plc-x").glob("*.fw.bin"))

    sim.delegated["plc-x"].signed.expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    sim.publish(("plc-x",))
    r = airlock("import", sim.write_bundle(tmp_path / "re-signed", include_targets=False))
    assert r.code == 0, r.err
    updater = client(tmp_path, published_tree(home), sim.first_root())
    updater.refresh()
    assert client_verdict(updater, "plc-x/fw.bin") == "available"
    assert appliance_verdicts(airlock)["plc-x/fw.bin"] == "available"
