"""The vendor guide's step-by-step threshold signing, run as written: the
commands are read from docs/vendor-guide.md, not copied into the test."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.conftest import sign_cli

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "vendor-guide.md"


def _section_commands() -> list[list[str]]:
    text = GUIDE.read_text()
    section = text.split("## Threshold signing across people, step by step", 1)[1].split("\n## ", 1)[0]
    return [shlex.split(c)[1:] for c in re.findall(r"`(airlock-sign [^`]+)`", section)]


def test_threshold_rotation_steps_publish_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRLOCK_SIGN_PASSPHRASE", "pw")
    monkeypatch.setattr("signing.keys.SCRYPT_N", 2**8)
    commands = _section_commands()
    by_verb: dict[str, list[list[str]]] = {}
    for argv in commands:
        by_verb.setdefault(argv[0], []).append(argv)
    assert sign_cli("init", "ws", "--name", "acme", "--keys", "root=3", "--threshold", "root=2")[0] == 0
    shutil.copy("ws/keys/root-1.key", "alice-root.key")  # the key the guide has Alice use

    code, _, err = sign_cli(*by_verb["rotate"][0])  # step 1, the rotation
    assert code == 0, err
    code, out, _ = sign_cli(*by_verb["status"][0])
    assert "root v2" in out and "0/2 of the keys in root v1 (needs 2 more)" in out
    (alice,) = by_verb["sign"]
    assert sign_cli(*alice)[0] == 0  # step 3
    assert sign_cli("sign", "ws", "--key", "ws/keys/root-2.key")[0] == 0  # step 4: Bob, with his key
    code, out, _ = sign_cli(*by_verb["status"][-1])
    assert "ready" in out
    (publish,) = by_verb["publish"]  # step 5, exactly as the guide writes it
    code, out, err = sign_cli(*publish)
    assert code == 0, err
    assert "published root v2" in out
