"""`make demo` end to end: airlock-sign builds, signs and bundles a vendor
repository, airlock pins, imports and serves it, and the printed fetch
command verifies a delegated target with python-tuf.  A second `make demo`
while the first one serves is refused and changes nothing."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Demo:
    base: str
    lines: list[str]
    folder: Path
    env: dict


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo-run")
    env = dict(os.environ, AIRLOCK_DEMO_DIR=str(tmp_path / "demo"))
    proc = subprocess.Popen([sys.executable, "-m", "appliance.demo"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        base = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"== serving on (http://127\.0\.0\.1:\d+)/", line)
            if m:
                base = m.group(1)
            if base and "Listening at" in line:
                break
        assert base, "".join(lines)
        yield Demo(base, lines, tmp_path / "demo", env)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_demo_runs_and_printed_fetch_command_works(demo):
    output = "".join(demo.lines)
    assert "verdict: OK" in output and "imported: acme" in output
    fetch_cmd = next(line for line in demo.lines if "demo/fetch.py" in line).split()
    assert fetch_cmd[-2:] == [demo.base, "plc-x/plc-x-1.2.0.bin"]
    script = demo.folder / "fetch.py"
    result = subprocess.run([sys.executable, str(script), demo.base, "plc-x/plc-x-1.2.0.bin"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "verified plc-x/plc-x-1.2.0.bin: 262144 bytes" in result.stdout


def test_a_second_demo_while_one_serves_is_refused_and_changes_nothing(demo, tmp_path):
    root = demo.folder / "vendor" / "published" / "metadata" / "1.root.json"
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in demo.folder.rglob("*") if p.is_file()}
    second = subprocess.run([sys.executable, "-m", "appliance.demo"], cwd=tmp_path, env=demo.env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert second.stdout == ""
    assert second.stderr.count("\n") == 1, second.stderr
    assert f"demo: a demo is already running from {demo.folder} (pid " in second.stderr
    assert "AIRLOCK_DEMO_DIR=" in second.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in demo.folder.rglob("*") if p.is_file()}
    assert after == before
    # the running server still serves the keys it started with
    with urllib.request.urlopen(f"{demo.base}/repos/acme/metadata/1.root.json", timeout=30) as answer:
        assert answer.read() == root.read_bytes()
