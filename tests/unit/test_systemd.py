"""Every systemd unit in systemd/ is valid and hardened, checked offline
with systemd-analyze (no running systemd needed): `verify` passes with no
unknown or invalid setting, and each service's `security --offline=yes`
exposure is 2.0 or better.  Template units (``name@.service``) are checked
as an instance."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer", ".socket", ".path"))
MAX_EXPOSURE = 2.0


def test_the_units_are_there():
    assert "airlock.service" in {p.name for p in UNITS}


@pytest.fixture
def unit_copies(tmp_path) -> dict[str, Path]:
    """Every unit, with /opt/airlock/bin/ pointing at this venv's scripts
    (ExecStart paths must exist), templates named as an instance."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "airlock").exists(), "install the project (make test does) so the airlock script exists"
    copies = {}
    for unit in UNITS:
        name = unit.name.replace("@.", "@test0.")
        text = unit.read_text().replace("/opt/airlock/bin/", f"{bin_dir}/")
        (tmp_path / name).write_text(text)
        copies[unit.name] = tmp_path / name
    return copies


def _tool() -> str:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is needed: `make test` installs it (tests/prereqs.sh)"
    return tool


@pytest.mark.parametrize("unit", [p.name for p in UNITS])
def test_unit_verifies(unit, unit_copies):
    path = unit_copies[unit]
    proc = subprocess.run([_tool(), "verify", "--man=no", str(path)], capture_output=True, text=True,
                          cwd=path.parent, timeout=60)
    problems = [line for line in proc.stderr.splitlines()
                if path.name in line and ("Unknown" in line or "Failed" in line or "Invalid" in line)]
    assert proc.returncode == 0 and not problems, proc.stderr


@pytest.mark.parametrize("unit", [p.name for p in UNITS if p.suffix == ".service"])
def test_service_is_hardened(unit, unit_copies):
    proc = subprocess.run([_tool(), "security", "--offline=yes", str(unit_copies[unit])],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout[-3000:]
