"""Import: accepted bundles are published atomically and recorded; the same
bundle again is a no-op that says so."""

import json
import sqlite3
import tarfile

from tests.conftest import pin, tree_state


def test_pin_import_and_show(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/plc-x-1.0.0.bin", b"firmware one" * 1000, version="1.0.0")
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    r = airlock("import", media)
    assert r.code == 0, r.err
    assert "imported: acme:" in r.out
    meta = home / "public/repos/acme/metadata"
    assert (meta / "timestamp.json").read_bytes() == sim.metadata["timestamp.json"]
    assert (meta / "2.targets.json").read_bytes() == sim.metadata["2.targets.json"]
    tf = sim.targets.signed.targets["fw/plc-x-1.0.0.bin"]
    stored = home / f"public/repos/acme/targets/fw/{tf.hashes['sha256']}.plc-x-1.0.0.bin"
    assert stored.read_bytes() == b"firmware one" * 1000

    again = airlock("import", media)
    assert again.code == 0
    assert "already imported" in again.out

    show = airlock("repo", "show", "acme", "--json")
    assert show.code == 0, show.err
    report = json.loads(show.out)
    roles = {r["name"]: r for r in report["roles"]}
    assert roles["targets"]["version"] == 2
    assert roles["root"]["signed_by"] == roles["root"]["keyids"]
    assert roles["timestamp"]["days_left"] in (6, 7)
    assert [t["path"] for t in report["targets"]] == ["fw/plc-x-1.0.0.bin"]
    statuses = [i["status"] for i in report["imports"]]
    assert statuses == ["unchanged", "accepted"]
    added = report["imports"][1]["repository"]["targets_added"]
    assert added == ["fw/plc-x-1.0.0.bin"]
    text = airlock("repo", "show", "acme")
    assert "fw/plc-x-1.0.0.bin" in text.out and "threshold 1 of 1" in text.out


def test_tar_gz_bundle_and_incremental(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("a.bin", b"A" * 5000)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(media / "airlock", arcname="airlock")
    assert airlock("import", archive).code == 0

    first = set(sim.target_files)
    sim.add_target("b.bin", b"B" * 5000)
    sim.publish()
    new_only = set(sim.target_files) - first
    media2 = sim.write_bundle(tmp_path / "usb2", only_targets=new_only)
    r = airlock("import", media2 / "airlock")
    assert r.code == 0, r.err
    report = json.loads(airlock("repo", "show", "acme", "--json").out)
    assert sorted(t["path"] for t in report["targets"]) == ["a.bin", "b.bin"]


def test_root_rotation_publishes_every_root(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    for role in ("root", "timestamp", "snapshot", "root"):
        sim.rotate(role)
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    names = sorted((home / "public/repos/acme/metadata").iterdir())
    roots = [p.name for p in names if p.name.endswith(".root.json") and p.name[0].isdigit()]
    assert roots == ["1.root.json", "2.root.json", "3.root.json", "4.root.json", "5.root.json"]
    assert (home / "public/repos/acme/metadata/root.json").read_bytes() == sim.metadata["5.root.json"]


def test_delegated_roles_are_all_verified_and_published(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.delegate("plc-x", ["plc-x/*"])
    sim.delegate("plc-x-beta", ["plc-x/beta/*"], parent="plc-x")
    sim.add_target("plc-x/fw.bin", b"X" * 100, role="plc-x")
    sim.add_target("plc-x/beta/fw.bin", b"Y" * 100, role="plc-x-beta")
    sim.publish(("targets", "plc-x", "plc-x-beta"))
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    report = json.loads(airlock("repo", "show", "acme", "--json").out)
    by_name = {r["name"]: r for r in report["roles"]}
    assert by_name["plc-x-beta"]["delegator"] == "plc-x"
    assert by_name["plc-x"]["paths"] == ["plc-x/*"]
    assert (home / "public/repos/acme/metadata/1.plc-x-beta.json").exists()


def test_old_snapshot_stays_during_grace_and_goes_after(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("a.bin", b"A")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "u1")).code == 0
    sim.remove_target("a.bin")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "u2")).code == 0
    meta = home / "public/repos/acme/metadata"
    assert (meta / "3.snapshot.json").exists() and (meta / "4.snapshot.json").exists()
    tf_name = next(iter(sim.target_files))
    assert (home / "public/repos/acme/targets" / tf_name).exists()  # removed target stays in grace

    (home / "airlock.toml").write_text("grace_period = 0\n")
    sim.publish()
    assert airlock("import", sim.write_bundle(tmp_path / "u3")).code == 0
    assert not (meta / "3.snapshot.json").exists()
    assert (meta / "5.snapshot.json").exists()
    assert not (home / "public/repos/acme/targets" / tf_name).exists()


def test_import_is_recorded_with_operator_and_digest(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.publish()
    r = airlock("import", sim.write_bundle(tmp_path / "usb"), "--operator", "alice")
    assert r.code == 0
    con = sqlite3.connect(home / "airlock.db")
    row = con.execute("SELECT operator, status, bundle_digest, details FROM import_record").fetchone()
    assert row[0] == "alice" and row[1] == "accepted" and len(row[2]) == 64
    details = json.loads(row[3])
    assert details["repositories"]["acme"]["versions_before"] == {"root": 1}
    assert details["repositories"]["acme"]["versions_after"]["targets"] == 2


def test_ecdsa_repository(airlock, home, tmp_path):
    from tests.support.simulator import RepoSim

    sim = RepoSim("ecorp", key_type="ecdsa")
    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw.bin", b"E" * 100)
    sim.publish()
    r = airlock("import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    report = json.loads(airlock("repo", "show", "ecorp", "--json").out)
    assert {t for role in report["roles"] for t in role["keytypes"].values()} == {"ecdsa/ecdsa-sha2-nistp256"}


def test_two_repositories_in_one_bundle_and_one_bad_refuses_both(airlock, home, tmp_path):
    from tests.support.simulator import RepoSim

    acme, beta = RepoSim("acme"), RepoSim("beta")
    for s in (acme, beta):
        assert pin(airlock, s, tmp_path).code == 0
        s.add_target("fw.bin", s.name.encode() * 10)
        s.publish()
    media = tmp_path / "usb"
    acme.write_bundle(media)
    beta.write_bundle(media)
    before = tree_state(home)
    name = f"{beta.targets.signed.version}.targets.json"
    good = (media / "airlock/beta/metadata" / name).read_bytes()
    (media / "airlock/beta/metadata" / name).write_bytes(good.replace(b'"length": 40', b'"length": 41'))
    r = airlock("import", media)
    assert r.code == 1 and "'beta'" in r.err
    assert tree_state(home) == before  # acme was fine, yet nothing of it was published

    (media / "airlock/beta/metadata" / name).write_bytes(good)
    r = airlock("import", media)
    assert r.code == 0, r.err
    assert "acme:" in r.out and "beta:" in r.out


def test_non_canonical_json_is_accepted_and_served_byte_for_byte(airlock, sim, home, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw.bin", b"F" * 10)
    sim.publish()
    # another tool's layout: odd indentation, reversed key order, a trailing newline
    for name, data in list(sim.metadata.items()):
        doc = json.loads(data)
        sim.metadata[name] = (json.dumps(doc, indent=7, sort_keys=False, separators=(" ,", " : "))[::1] + "\n").encode()
    media = sim.write_bundle(tmp_path / "usb")
    r = airlock("import", media)
    assert r.code == 0, r.err
    for name in ("timestamp.json", f"{sim.snapshot.signed.version}.snapshot.json",
                 f"{sim.targets.signed.version}.targets.json"):
        assert (home / "public/repos/acme/metadata" / name).read_bytes() == sim.metadata[name]


def test_progress_bar_shows_bytes_and_files(airlock, sim, home, tmp_path):
    import io

    from appliance.importer import import_bundle
    from appliance.progress import ProgressBar
    from server.settings import load_settings

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pin(airlock, sim, tmp_path)
    sim.add_target("big.bin", b"x" * (3 << 20))
    sim.publish()
    screen = Terminal()
    bar = ProgressBar("importing", stream=screen, min_interval=0)
    import_bundle(load_settings(home), sim.write_bundle(tmp_path / "usb"), "tester", progress=bar)
    bar.close()
    frames = screen.getvalue().rstrip("\n").split("\r")
    copied = [f for f in frames if f.startswith("importing: copying targets")][-1]
    assert "[##############################]" in copied and "files" in copied and "MB" in copied
    assert frames[-1].startswith("importing: publishing")


def test_commands_on_a_missing_home_say_run_init(tmp_path):
    from tests.conftest import run_airlock

    for args in (("repo", "list"), ("import", tmp_path), ("audit", "verify"), ("devices", "list")):
        r = run_airlock(tmp_path / "not-initialised", *args)
        assert r.code == 1, args
        assert r.err.startswith("airlock: error: no appliance database") and "airlock init" in r.err, r.err
        assert "Traceback" not in r.err
