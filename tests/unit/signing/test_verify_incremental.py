"""``airlock-sign verify --incremental``: only a target truly absent from the
bundle is left to the appliance; every target present is hashed and checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import sign_cli
from tests.support.simulator import RepoSim


@pytest.fixture
def delivery(tmp_path) -> tuple[RepoSim, Path, Path, Path]:
    """A second delivery that carries only the new target b.bin: (sim, media,
    pinned root file, b.bin's file in the bundle)."""
    sim = RepoSim("acme")
    sim.add_target("a.bin", b"A" * 10)
    sim.publish()
    first = set(sim.target_files)
    sim.add_target("fw/b.bin", b"B" * 4096)
    sim.publish()
    (new,) = set(sim.target_files) - first
    media = sim.write_bundle(tmp_path / "usb", only_targets={new})
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    return sim, media, root, media / "airlock" / "acme" / "targets" / new


def test_intact_incremental_bundle_defers_only_the_absent_target(delivery):
    _, media, root, _ = delivery
    code, out, err = sign_cli("verify", media, "--root", root, "--incremental")
    assert code == 0, err
    assert "verdict: OK" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ")}
    assert "not in bundle" in lines["a.bin"]
    assert "not in bundle" not in lines["fw/b.bin"], out

    code, out, err = sign_cli("verify", media, "--root", root, "--incremental", "--json")
    assert code == 0, err
    targets = {t["path"]: t["in_bundle"] for t in json.loads(out)["repositories"][0]["targets"]}
    assert targets == {"a.bin": False, "fw/b.bin": True}


def test_flipped_byte_in_a_present_target_is_refused(delivery):
    _, media, root, b_file = delivery
    data = bytearray(b_file.read_bytes())
    data[1000] ^= 0x01  # same length: only the hash can tell
    b_file.write_bytes(bytes(data))
    code, out, err = sign_cli("verify", media, "--root", root, "--incremental")
    assert code == 1, out
    assert "verdict: OK" not in out
    line = err.strip()
    assert line.startswith("airlock-sign: error: ") and "\n" not in line, err
    assert b_file.name in line and "sha256 hash does not match" in line, line


def test_truncated_present_target_is_refused(delivery):
    _, media, root, b_file = delivery
    b_file.write_bytes(b_file.read_bytes()[:-1])
    code, out, err = sign_cli("verify", media, "--root", root, "--incremental")
    assert code == 1, out
    assert b_file.name in err and "4095 bytes" in err, err


def test_without_the_flag_an_absent_target_is_still_refused(delivery):
    _, media, root, _ = delivery
    code, out, err = sign_cli("verify", media, "--root", root)
    assert code == 1, out
    assert "a.bin" in err and "neither in the bundle nor already on the appliance" in err


@pytest.mark.parametrize("packed", [False, True])
def test_folder_where_a_target_belongs_is_refused_not_deferred(delivery, tmp_path, packed):
    """A folder named like the target file is neither the file nor its
    absence: an incremental check must refuse it, not defer it."""
    import tarfile

    sim, media, root, b_file = delivery
    b_file.unlink()
    b_file.mkdir()
    (b_file / "inside").write_bytes(b"x")
    source = media
    if packed:
        source = tmp_path / "bundle.tar"
        with tarfile.open(source, "w") as tar:
            tar.add(media / "airlock", arcname="airlock")
    code, out, err = sign_cli("verify", source, "--root", root, "--incremental")
    assert code == 1, out
    line = err.strip()
    assert line.startswith("airlock-sign: error: ") and "\n" not in line, err
    assert b_file.name in line and "is a folder where a target file belongs" in line, line
