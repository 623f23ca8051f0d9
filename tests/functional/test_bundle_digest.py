"""The import history's bundle digest covers the bytes delivered: a tampered
bundle and the genuine one differ; the same bundle as a folder, as a tar or
checked by ``airlock-sign verify`` gives one digest."""

from __future__ import annotations

import json
import re
import shutil
import tarfile

from tests.conftest import pin, run_airlock, sign_cli


def _imports(airlock) -> list[dict]:
    r = airlock("repo", "show", "acme", "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)["imports"]


def test_tampered_target_and_genuine_bundle_get_different_digests(airlock, sim, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw/plc-x.bin", b"firmware" * 2000)
    sim.publish()
    genuine = sim.write_bundle(tmp_path / "usb1")
    tampered = tmp_path / "usb2"
    shutil.copytree(genuine, tampered)
    (target,) = (tampered / "airlock/acme/targets/fw").iterdir()
    data = bytearray(target.read_bytes())
    data[100] ^= 0x20  # same length, same name: only the content differs
    target.write_bytes(bytes(data))

    assert airlock("import", tampered).code == 1
    assert airlock("import", genuine).code == 0
    assert airlock("import", genuine).code == 0  # already imported: no target is read this time
    by_status = {i["status"]: i["bundle_digest"] for i in _imports(airlock)}
    assert set(by_status) == {"refused", "accepted", "unchanged"}
    assert by_status["unchanged"] == by_status["accepted"]
    assert re.fullmatch(r"[0-9a-f]{64}", by_status["accepted"])
    assert re.fullmatch(r"[0-9a-f]{64}", by_status["refused"])
    assert by_status["refused"] != by_status["accepted"]


def test_same_bundle_same_digest_as_folder_tar_and_in_airlock_sign_verify(airlock, sim, tmp_path):
    pin(airlock, sim, tmp_path)
    sim.add_target("fw/plc-x.bin", b"firmware" * 2000)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(media / "airlock", arcname="airlock")
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())

    assert airlock("import", media).code == 0
    (from_folder,) = [i["bundle_digest"] for i in _imports(airlock)]

    other_home = tmp_path / "other-home"
    assert run_airlock(other_home, "init").code == 0
    assert pin(lambda *a: run_airlock(other_home, *a), sim, tmp_path).code == 0
    assert run_airlock(other_home, "import", archive).code == 0
    shown = json.loads(run_airlock(other_home, "repo", "show", "acme", "--json").out)
    (from_tar,) = [i["bundle_digest"] for i in shown["imports"]]

    code, out, err = sign_cli("verify", archive, "--root", root, "--json")
    assert code == 0, err
    assert from_folder == from_tar == json.loads(out)["bundle_digest"]
