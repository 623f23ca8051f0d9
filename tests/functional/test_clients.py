"""Standard TUF clients against a real `airlock serve` (gunicorn on loopback):
python-tuf's ngclient and tuf-js, bootstrapped with root v1 while the
appliance serves root v5, reaching a target through a delegation."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from tests.conftest import pin
from tests.support.server import airlock_server
from tests.support.tufjs import fetch_with_tufjs

FIRMWARE = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def published(airlock, sim, home, tmp_path):
    assert pin(airlock, sim, tmp_path).code == 0
    for role in ("root", "timestamp", "root", "snapshot"):
        sim.rotate(role)  # root v5, timestamp and snapshot keys changed on the way
    sim.delegate("plc-x", ["plc-x/*"])
    sim.add_target("plc-x/fw-2.0.0.bin", FIRMWARE, role="plc-x", version="2.0.0")
    sim.add_target("gateway/fw.bin", b"gateway firmware")
    sim.publish(("targets", "plc-x"))
    r = airlock("import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    with airlock_server(home) as base:
        yield base, sim


def test_ngclient_from_root_v1(published, tmp_path):
    base, sim = published
    (tmp_path / "device-meta").mkdir()
    updater = Updater(
        metadata_dir=str(tmp_path / "device-meta"),
        metadata_base_url=f"{base}/repos/acme/metadata/",
        target_base_url=f"{base}/repos/acme/targets/",
        target_dir=str(tmp_path / "device-dl"),
        bootstrap=sim.first_root(),
    )
    (tmp_path / "device-dl").mkdir()
    updater.refresh()
    info = updater.get_targetinfo("plc-x/fw-2.0.0.bin")
    assert info is not None and info.custom == {"hardware": ["plc-x"], "version": "2.0.0"}
    path = updater.download_target(info)
    assert Path(path).read_bytes() == FIRMWARE
    assert updater.get_targetinfo("gateway/fw.bin") is not None
    assert json.loads((tmp_path / "device-meta/root.json").read_bytes())["signed"]["version"] == 5


def test_tufjs_from_root_v1(published, tmp_path):
    base, sim = published
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.first_root())
    result = fetch_with_tufjs(root, tmp_path / "js-meta", f"{base}/repos/acme", "plc-x/fw-2.0.0.bin",
                              tmp_path / "js-dl")
    assert result["ok"], result
    assert Path(result["file"]).read_bytes() == FIRMWARE
    assert result["custom"] == {"hardware": ["plc-x"], "version": "2.0.0"}


def test_tufjs_refuses_tampered_target(published, tmp_path, home):
    base, sim = published
    tf = sim.delegated["plc-x"].signed.targets["plc-x/fw-2.0.0.bin"]
    served = home / f"public/repos/acme/targets/plc-x/{tf.hashes['sha256']}.fw-2.0.0.bin"
    served.write_bytes(b"evil" + FIRMWARE[4:])
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.first_root())
    result = fetch_with_tufjs(root, tmp_path / "js-meta", f"{base}/repos/acme", "plc-x/fw-2.0.0.bin",
                              tmp_path / "js-dl")
    assert not result["ok"] and "hash" in result["error"].lower()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_semantics(published, home):
    base, sim = published
    status, headers, body = get(f"{base}/repos/acme/metadata/timestamp.json")
    assert status == 200 and body == sim.metadata["timestamp.json"]
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body) and headers["ETag"]

    status, headers, body = get(f"{base}/repos/acme/metadata/3.root.json")
    assert status == 200 and body == sim.metadata["3.root.json"]
    assert "immutable" in headers["Cache-Control"]
    assert get(f"{base}/repos/acme/metadata/6.root.json")[0] == 404
    assert get(f"{base}/repos/acme/metadata/../../airlock.db")[0] == 404
    assert get(f"{base}/repos/nope/metadata/1.root.json")[0] == 404

    tf = sim.delegated["plc-x"].signed.targets["plc-x/fw-2.0.0.bin"]
    url = f"{base}/repos/acme/targets/plc-x/{tf.hashes['sha256']}.fw-2.0.0.bin"
    status, headers, body = get(url, {"Range": "bytes=1000-1999"})
    assert status == 206 and body == FIRMWARE[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(FIRMWARE)}"
    status, headers, body = get(url)
    assert status == 200 and body == FIRMWARE and headers["Content-Type"] == "application/octet-stream"
    status, _, _ = get(url, {"If-None-Match": headers["ETag"]})
    assert status == 304

    status, _, body = get(f"{base}/healthz")
    assert status == 200 and json.loads(body)["repositories"] == {"acme": "ok"}
