"""The systemd unit is valid and hardened (checked offline with
systemd-analyze; no running systemd needed)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "airlock.service"


@pytest.fixture
def unit_copy(tmp_path) -> Path:
    """The unit with ExecStart pointing at this venv's airlock (it must exist)."""
    airlock = Path(sys.executable).parent / "airlock"
    assert airlock.exists(), "install the project (make test does) so the airlock script exists"
    text = UNIT.read_text().replace("/opt/airlock/bin/airlock", str(airlock))
    path = tmp_path / "airlock.service"
    path.write_text(text)
    return path


def test_unit_verifies(unit_copy):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is needed: `make test` installs it (tests/prereqs.sh)"
    proc = subprocess.run([tool, "verify", "--man=no", str(unit_copy)], capture_output=True, text=True)
    problems = [line for line in proc.stderr.splitlines()
                if "airlock.service" in line and ("Unknown" in line or "Failed" in line or "Invalid" in line)]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_unit_is_hardened(unit_copy):
    proc = subprocess.run([shutil.which("systemd-analyze"), "security", "--offline=yes", str(unit_copy)],
                          capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.5, proc.stdout[-2000:]
