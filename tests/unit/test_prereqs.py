"""tests/prereqs.sh, which `make test` runs before pytest: a missing tool is
named in one line with the command that installs it, and stops the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "prereqs.sh"
# everything the script checks, by command; chromium and node left out below
TOOLS = ["python3", "id", "node", "npm", "nginx", "strace", "tar", "ip", "unshare", "runuser", "useradd", "git",
         "dbus-daemon", "avahi-daemon", "avahi-browse", "avahi-publish", "chromium", "systemd-analyze", "faketime"]


@pytest.fixture
def bin_dir():
    """An empty folder for PATH that any user may search (pytest's tmp_path is root's only)."""
    with tempfile.TemporaryDirectory(prefix="airlock-prereqs-") as d:
        Path(d).chmod(0o755)
        yield Path(d)


BASICS = ["chmod", "rm", "echo"]  # what the script itself runs besides the tools it checks


def fill(bin_dir: Path, *left_out: str) -> Path:
    """Link every tool the script checks but ``left_out`` into ``bin_dir``."""
    for tool in BASICS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for tool in TOOLS:
        if tool not in left_out:
            found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
            if tool == "python3":  # Debian's, which any user may run (not a pyenv shim under /root)
                found = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else found
            assert found, f"{tool} is missing on this machine: run `sh tests/prereqs.sh` as root"
            (bin_dir / tool).symlink_to(found)
    return bin_dir


def test_a_missing_tool_is_named_in_one_line_with_the_command(bin_dir):
    fill(bin_dir, "chromium", "node", "npm")
    # as an unprivileged user, who cannot install: the script reports and fails
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/env", f"PATH={bin_dir}", "/bin/sh", "-s"],
                          stdin=SCRIPT.open("rb"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == ("make test: missing packages: nodejs npm chromium; install them as root: "
                        "apt-get update && apt-get install -y --no-install-recommends nodejs npm chromium")


def test_root_can_ask_for_the_report_only(bin_dir):
    fill(bin_dir, "strace")
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(bin_dir), "PREREQS_NO_INSTALL": "1"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "missing packages: strace;" in proc.stderr, proc


def test_this_machine_has_everything():
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], env=dict(os.environ, PREREQS_NO_INSTALL="1"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_make_test_checks_prerequisites_before_pytest():
    proc = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = proc.stdout.splitlines()
    prereqs = next(i for i, s in enumerate(steps) if "tests/prereqs.sh" in s)
    pytest_run = next(i for i, s in enumerate(steps) if "-m pytest" in s)
    assert prereqs < pytest_run, steps
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get install" in ci and ci.count("apt-get install") == 1  # make alone


def test_as_root_the_missing_packages_are_installed_with_apt_while_daemons_may_not_start(bin_dir, tmp_path):
    fill(bin_dir, "strace", "chromium")
    policy, calls = tmp_path / "policy-rc.d", tmp_path / "apt-calls"
    # apt-get as the script meets it: record how it was called and whether
    # service starts were forbidden at that moment
    (bin_dir / "apt-get").write_text(f"""#!/bin/sh
echo "$DEBIAN_FRONTEND $* policy=$("{policy}" start; echo $?)" >> "{calls}"
""")
    (bin_dir / "apt-get").chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(bin_dir), "PREREQS_POLICY_RC_D": str(policy)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "make test: installing strace chromium\n"
    assert calls.read_text().splitlines() == [
        "noninteractive update -q policy=101",
        "noninteractive install -y -q --no-install-recommends strace chromium policy=101"]
    assert not policy.exists()  # removed again: it was the script's own


def test_a_policy_already_in_place_is_left_alone(bin_dir, tmp_path):
    fill(bin_dir, "strace")
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "apt-get").chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(bin_dir), "PREREQS_POLICY_RC_D": str(policy)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_a_failed_install_fails(bin_dir, tmp_path):
    fill(bin_dir, "strace")
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    policy = tmp_path / "policy-rc.d"
    proc = subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(bin_dir), "PREREQS_POLICY_RC_D": str(policy)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert not policy.exists()
