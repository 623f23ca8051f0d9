"""``airlock-sign`` end to end: real keys, real metadata, real verification."""

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signing.cli import build_parser, main

PASS = "cli passphrase"
DOCS = Path(__file__).resolve().parents[3] / "docs" / "vendor-guide.md"


@pytest.fixture
def run(monkeypatch, capsys):
    """run(*argv) -> (exit status, stdout, stderr), passphrase from the environment."""
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", PASS)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    def call(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture
def workspace(run, tmp_path):
    ws = tmp_path / "ws"
    code, out, err = run("init", ws, "--name", "acme", "--expires", "timestamp=3")
    assert code == 0, err
    return ws


def test_init_prints_the_fingerprint_to_pin(run, workspace):
    root = workspace / "published/metadata/1.root.json"
    digest = hashlib.sha256(root.read_bytes()).hexdigest()
    code, out, _ = run("fingerprint", root)
    assert (code, out.strip()) == (0, digest)
    # init printed it too (the workspace fixture swallowed it, so init again)
    code, out, _ = run("init", workspace.parent / "ws2", "--name", "acme")
    root2 = workspace.parent / "ws2/published/metadata/1.root.json"
    assert f"sha256 fingerprint: {hashlib.sha256(root2.read_bytes()).hexdigest()}" in out


def test_release_flow_bundle_and_verify(run, workspace, tmp_path):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"firmware bytes" * 50)
    code, out, err = run(
        "add-target", workspace, fw, "--path", "firmware/x/fw.bin", "--hardware", "x1", "--hardware", "x2",
        "--version", "1.4.0",
    )
    assert code == 0, err
    assert "staged targets v2" in out
    code, out, _ = run("status", workspace, "--json")
    staged = json.loads(out)["staged"]
    assert [(s["role"], s["version"], s["ready"]) for s in staged] == [("targets", 2, False)]
    code, out, err = run("publish", workspace, "--keys-dir", workspace / "keys")
    assert code == 0, err
    assert "targets v2, snapshot v2, timestamp v2" in out

    archive = tmp_path / "bundle.tar.gz"
    code, out, err = run("bundle", workspace, archive, "--format", "tar.gz")
    assert code == 0 and archive.is_file(), err
    root = workspace / "published/metadata/1.root.json"
    code, out, err = run("verify", archive, "--root", root, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "acme" in json.dumps(report)
    code, out, err = run("verify", archive, "--root", f"acme={root}")
    assert code == 0, err
    # a bundle checked against someone else's root is refused with one line
    code, out, err = run("init", tmp_path / "other", "--name", "acme")
    code, out, err = run("verify", archive, "--root", tmp_path / "other/published/metadata/1.root.json")
    assert code == 1 and err.startswith("airlock-sign: error: ") and err.count("\n") == 1


def test_threshold_signing_by_two_people_with_their_own_keys(run, tmp_path):
    ws = tmp_path / "ws"
    assert run("init", ws, "--name", "acme", "--keys", "root=3", "--threshold", "root=2")[0] == 0
    # two people make their own keys with their own passphrases
    for who in ("alice", "bob"):
        (tmp_path / f"{who}.pass").write_text(f"{who}'s passphrase\n")
        code, out, err = run("keygen", tmp_path / f"{who}.key", "--passphrase-file", tmp_path / f"{who}.pass")
        assert code == 0, err
        assert (tmp_path / f"{who}.pub").is_file()
    code, out, err = run(
        "rotate", ws, "root", "--public-key", tmp_path / "alice.pub", "--public-key", tmp_path / "bob.pub",
        "--threshold", "2",
    )
    assert code == 0, err
    code, out, err = run("publish", ws, "--keys-dir", ws / "keys")
    assert code == 1 and "root needs" in err  # alice and bob have not signed yet
    for who in ("alice", "bob"):
        key, pass_file = tmp_path / f"{who}.key", tmp_path / f"{who}.pass"
        code, out, err = run("sign", ws, "--key", key, "--passphrase-file", pass_file)
        assert code == 0, err
        assert "signed root" in out
    code, out, err = run("publish", ws, "--keys-dir", ws / "keys")
    assert code == 0, err
    assert "root v2" in out
    # a wrong passphrase is refused with a clear reason
    code, out, err = run("sign", ws, "--key", tmp_path / "alice.key")
    assert code == 1 and "wrong passphrase" in err


def test_delegate_and_expires(run, workspace, tmp_path):
    code, out, err = run("delegate", workspace, "model-x", "--paths", "firmware/model-x/*")
    assert code == 0, err
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"x")
    code, out, err = run(
        "add-target", workspace, fw, "--path", "firmware/model-y/a.bin", "--hardware", "y", "--version", "1.0.0",
        "--role", "model-x",
    )
    assert code == 1 and "outside what model-x may sign" in err
    code, out, err = run("expires", workspace, "snapshot", "10")
    assert code == 0 and "each publish" in out
    code, out, err = run("publish", workspace, "--keys-dir", workspace / "keys")
    assert code == 0 and "model-x v1" in out, err


def test_errors_are_one_line(run, workspace, tmp_path, monkeypatch):
    code, out, err = run("publish", workspace)  # neither --key nor --keys-dir
    assert code == 2 and err.startswith("airlock-sign: error: ") and err.count("\n") == 1
    code, out, err = run("init", tmp_path / "x", "--name", "acme", "--keys", "root")
    assert code == 2 and "ROLE=N" in err
    code, out, err = run("status", tmp_path)
    assert code == 1 and "not an airlock-sign workspace" in err
    code, out, err = run("add-target", workspace, tmp_path / "nothing", "--path", "../x", "--hardware", "m",
                         "--version", "1.0.0")
    assert code == 1 and "refused" in err
    monkeypatch.delenv("AIRLOCK_SIGN_PASSPHRASE")
    code, out, err = run("publish", workspace, "--keys-dir", workspace / "keys")
    assert code == 1 and "--passphrase-file" in err and err.count("\n") == 1


def test_console_script_runs_and_imports_no_web_stack(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, signing.cli, signing.workspace, signing.verify; "
         "bad = [m for m in ('flask', 'peewee', 'zeroconf', 'click', 'requests') if m in sys.modules]; "
         "print(bad)"],
        capture_output=True, text=True, check=True,
    )
    assert proc.stdout.strip() == "[]"
    proc = subprocess.run(
        [sys.executable, "-m", "signing.cli", "fingerprint", str(tmp_path / "missing.json")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert re.fullmatch(r"airlock-sign: error: .*missing\.json.*\n", proc.stderr)


def test_every_subcommand_is_documented():
    text = DOCS.read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    missing = [c for c in commands if f"airlock-sign {c}" not in text]
    assert not missing, f"docs/vendor-guide.md does not document: {missing}"


def test_verify_incremental_bundle_needs_the_flag(tmp_path, capsys):
    """An incremental bundle fails plain verify (missing target) and passes
    with --incremental, which lists what the appliance must already hold."""
    from tests.support.simulator import RepoSim

    sim = RepoSim("acme")
    sim.add_target("a.bin", b"A" * 10)
    sim.publish()
    first = set(sim.target_files)
    sim.add_target("b.bin", b"B" * 10)
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb", only_targets=set(sim.target_files) - first)
    root = tmp_path / "root.json"
    root.write_bytes(sim.first_root())
    assert main(["verify", str(media), "--root", str(root)]) == 1
    assert "a.bin" in capsys.readouterr().err
    assert main(["verify", str(media), "--root", str(root), "--incremental"]) == 0
    out = capsys.readouterr().out
    assert "a.bin  10 bytes" in out and "not in bundle" in out
