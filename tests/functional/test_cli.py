"""The `airlock` command line as people type it: `--home` wherever they put
it, a misspelt AIRLOCK_* variable named, and one line on the terminal per
refusal while the log keeps the record."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import cli
from tests.conftest import pin, run_airlock
from tests.unit.test_docs import command_paths

AIRLOCK = Path(sys.executable).parent / "airlock"


def airlock_process(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed `airlock` script in its own process: logging configured as
    in the field (in-process runs share pytest's logging handlers)."""
    return subprocess.run([str(AIRLOCK), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


# --- --home after the subcommand --------------------------------------------

@pytest.mark.parametrize("path", sorted(command_paths(cli)))
def test_every_command_takes_home_after_it(path, tmp_path):
    words = path.split()[1:]
    r = run_airlock(tmp_path / "home", *words, "--home", tmp_path / "elsewhere", "--help")
    assert r.code == 0, r.err
    assert "--home DIR" in r.out


def test_home_after_nested_subcommands_is_the_home_used(airlock, sim, home, tmp_path):
    from appliance.cli import main

    assert pin(airlock, sim, tmp_path).code == 0
    sim.add_target("fw/a.bin", b"A" * 1000, version="1.0.0")
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb1")
    # the home given first (a folder that is no appliance) is overridden by the one typed last
    nowhere = tmp_path / "nowhere"
    for argv, expect in ((["import", media, "--home", home], "imported: acme"),
                         (["repo", "show", "acme", "--home", home], "targets: 1"),
                         (["devices", "list", "--home", home], "no devices"),
                         (["devices", "auto-accept", "list", "--home", home], "")):
        r = run_airlock(nowhere, *argv)
        assert r.code == 0, (argv, r.err)
        assert expect in r.out
    assert not nowhere.exists()
    assert main(["--home", str(nowhere), "repo", "list"]) == 1  # the first one alone is used when no other


# --- misspelt AIRLOCK_* variables -------------------------------------------

def test_a_misspelt_setting_in_the_environment_is_refused_naming_the_nearest(home):
    r = airlock_process("--home", home, "repo", "list", env={"AIRLOCK_CHECKIN_INTERVL": "5"})
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == ("airlock: error: environment: AIRLOCK_CHECKIN_INTERVL is not a setting; did you mean "
                        "AIRLOCK_CHECKIN_INTERVAL? unset it (settings are listed by `airlock settings` and in "
                        "docs/operator-guide.md)\n")


def test_variables_of_the_other_tools_are_not_settings_and_pass(home):
    env = {"AIRLOCK_SIGN_PASSPHRASE": "x", "AIRLOCK_AGENT_DEVICE_ID": "plc-1", "AIRLOCK_TARGET": "fw/a.bin",
           "AIRLOCK_VERSION": "1.0.0", "AIRLOCK_RELEASE_ID": "1", "AIRLOCK_REPOSITORY": "acme",
           "AIRLOCK_DEMO_DIR": "demo", "AIRLOCK_CHECKIN_INTERVAL": "120"}
    r = airlock_process("--home", home, "settings", env=env)
    assert r.returncode == 0, r.stderr
    assert "checkin_interval = 120" in r.stdout


# --- one line per refusal ---------------------------------------------------

def test_a_refused_import_prints_one_line_and_the_log_keeps_the_record(home, tmp_path):
    empty = tmp_path / "usb-empty"
    empty.mkdir()
    r = airlock_process("import", empty, "--home", home)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("airlock: error: "), r.stderr
    assert "holds no files" in r.stderr
    log = (home / "log" / "airlock.log").read_text()
    assert "level=warning logger=appliance.importer" in log and "refused" in log and "holds no files" in log
    assert oct((home / "log" / "airlock.log").stat().st_mode & 0o777) == "0o640"


def test_serve_logs_to_stderr_for_journald_not_to_the_log_file(home):
    from tests.support.server import airlock_server

    with airlock_server(home) as base:
        assert base
    served = (home / "serve.log").read_text()
    assert re.search(r"^level=info logger=appliance\.serve ", served, flags=re.M), served
    log_file = home / "log" / "airlock.log"
    assert "appliance.serve" not in (log_file.read_text() if log_file.exists() else "")
