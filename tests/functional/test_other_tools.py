"""A vendor whose tools are not ours: a repository made with tuf-js's own
models (@tufjs/models from npm; Ed25519, ECDSA P-256 and RSA-PSS keys and
signatures from Node's crypto; files indented by JSON.stringify, so valid
but not canonical), including a root key rotation, a delegation, a target
without custom metadata and an incremental second bundle packed by GNU tar.
`airlock-sign verify` accepts it, the appliance imports it, serves it byte
for byte, and python-tuf's ngclient and tuf-js both fetch through it from
root v1.

This test found that a target without `custom` (optional in TUF) crashed
the import."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from tuf.ngclient import Updater

from tests.conftest import sign_cli
from tests.support.server import airlock_server
from tests.support.tufjs import build_repo_with_tufjs, fetch_with_tufjs

REPO = "jsvendor"


def test_a_repository_made_with_tufjs(airlock, home, tmp_path):
    made = build_repo_with_tufjs(tmp_path / "vendor", REPO)
    root1 = Path(made["root1"])
    code, out, err = sign_cli("verify", made["bundle1"], "--root", root1)
    assert code == 0, out + err
    r = airlock("repo", "add", REPO, "--root", root1, "--fingerprint", hashlib.sha256(root1.read_bytes()).hexdigest())
    assert r.code == 0, r.err
    r = airlock("import", made["bundle1"])
    assert r.code == 0 and "root 1->2" in r.out, r.err
    metadata = Path(made["bundle1"]) / "airlock" / REPO / "metadata"
    served = home / "public" / "repos" / REPO / "metadata"
    for f in metadata.iterdir():
        assert (served / f.name).read_bytes() == f.read_bytes(), f"{f.name} was not served as the vendor wrote it"

    with airlock_server(home) as base:
        device = tmp_path / "device"
        (device / "meta").mkdir(parents=True)
        (device / "dl").mkdir()

        def updater() -> Updater:
            return Updater(metadata_dir=str(device / "meta"), metadata_base_url=f"{base}/repos/{REPO}/metadata/",
                           target_base_url=f"{base}/repos/{REPO}/targets/", target_dir=str(device / "dl"),
                           bootstrap=root1.read_bytes())

        u = updater()
        u.refresh()
        info = u.get_targetinfo("plc-x/fw-1.0.0.bin")
        assert info.custom == {"hardware": ["plc-x"], "version": "1.0.0"}
        assert Path(u.download_target(info)).read_bytes() == Path(made["fw100"]).read_bytes()
        readme = u.get_targetinfo("docs/readme.txt")
        assert readme is not None and readme.custom is None
        assert u.get_targetinfo("plc-x/fw-1.1.0.bin") is None

        # the vendor's next delivery: only the new target travels, as a .tar.gz made by GNU tar
        archive = tmp_path / "delivery-2.tar.gz"
        subprocess.run(["tar", "-czf", str(archive), "-C", made["bundle2"], "airlock"], check=True, timeout=60)
        code, out, err = sign_cli("verify", archive, "--root", root1, "--incremental")
        assert code == 0, out + err
        r = airlock("import", archive)
        assert r.code == 0 and "plc-x 1->2" in r.out, r.err
        u = updater()
        u.refresh()
        info = u.get_targetinfo("plc-x/fw-1.1.0.bin")
        assert Path(u.download_target(info)).read_bytes() == Path(made["fw110"]).read_bytes()

        result = fetch_with_tufjs(root1, tmp_path / "js-meta", f"{base}/repos/{REPO}", "plc-x/fw-1.1.0.bin",
                                  tmp_path / "js-dl")
        assert result["ok"], result
        assert Path(result["file"]).read_bytes() == Path(made["fw110"]).read_bytes()

    shown = json.loads(airlock("repo", "show", REPO, "--json").out)
    assert json.dumps(shown).count("plc-x/*") >= 1
    kinds = json.dumps(shown)
    assert "ecdsa/ecdsa-sha2-nistp256" in kinds and "rsa/rsassa-pss-sha256" in kinds and "ed25519/ed25519" in kinds
    paths = {t["path"]: t["custom"] for t in shown["targets"]}
    assert paths == {"docs/readme.txt": {}, "plc-x/fw-1.0.0.bin": {"hardware": ["plc-x"], "version": "1.0.0"},
                     "plc-x/fw-1.1.0.bin": {"hardware": ["plc-x"], "version": "1.1.0"}}
    # a target without custom metadata cannot be released (no version, no models), and says why
    r = airlock("releases", "approve", REPO, "docs/readme.txt", "--hardware", "plc-x")
    assert r.code == 1 and "lacks custom metadata" in r.err
    assert airlock("releases", "approve", REPO, "plc-x/fw-1.1.0.bin", "--hardware", "plc-x").code == 0
