"""The agent as a package: it imports only what a device has, every command
and setting is documented, and its configuration layers behave."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import COMMANDS, SETTINGS
from agent.config import AgentConfig, load_config
from agent.exceptions import ConfigError

DOCS = Path(__file__).parents[3] / "docs"
DEVICE_PACKAGES = {"agent", "cryptography", "tuf", "securesystemslib", "urllib3", "zeroconf", "ifaddr",
                   "async_timeout", "cffi", "_cffi_backend",
                   "cython_runtime"}  # zeroconf is compiled with Cython


def test_the_agent_imports_only_what_a_device_has():
    code = ("import sys, sysconfig\n"
            "import agent, agent.cli, agent.device, agent.simulate, agent.mdns, agent.updates\n"
            "std = set(sys.stdlib_module_names)\n"
            "print('\\n'.join(sorted({n.split('.')[0] for n in sys.modules} - std)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    extra = {name for name in out.split() if not name.startswith("_")} - DEVICE_PACKAGES
    assert not extra, f"agent/ pulls in {extra}"
    assert not {"flask", "peewee", "click", "server", "appliance", "signing", "tests"} & set(out.split())


def test_every_command_and_setting_is_documented():
    guide = (DOCS / "agent.md").read_text()
    for command in COMMANDS:
        assert f"airlock-agent {command}" in guide, f"document `airlock-agent {command}` in docs/agent.md"
    table = set(re.findall(r"^\| `([a-z_]+)` \|", guide, re.MULTILINE))
    for field in dataclasses.fields(AgentConfig):
        assert field.name in table, f"setting {field.name} is not in the settings table of docs/agent.md"
    for name, (flag, _, _) in SETTINGS.items():
        assert f"`{flag}`" in guide, f"flag {flag} of {name} is not in docs/agent.md"
    assert "(agent.md)" in (DOCS / "device-integration.md").read_text()


def test_configuration_layers(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('device_id = "a-1"\nhardware = "plc-x"\nfirmware = "1.0.0"\n'
                    'appliance_url = "http://127.0.0.1:1/"\nrequest_timeout = 5\n')
    config = load_config(path, {"hardware": "plc-y", "device_id": None},
                         environ={"AIRLOCK_AGENT_REQUEST_TIMEOUT": "7", "AIRLOCK_AGENT_MDNS_ENABLED": "no"})
    assert (config.device_id, config.hardware, config.request_timeout) == ("a-1", "plc-y", 7.0)
    assert config.appliance_url == "http://127.0.0.1:1" and config.mdns_enabled is False
    path.write_text(path.read_text() + 'colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown settings colour"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="appliance_url, or enable mDNS"):
        load_config(None, {"device_id": "a", "hardware": "b", "firmware": "1.0.0"}, environ={})
    with pytest.raises(ConfigError, match="not a version"):
        load_config(None, {"device_id": "a", "hardware": "b", "firmware": "one", "appliance_url": "http://x:1"},
                    environ={})


def test_a_misspelt_variable_is_one_warning_line_on_the_terminal(tmp_path):
    """Defect 8 (agent part): `AIRLOCK_AGENT_INTERVL` used to be ignored in silence."""
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\ndevice_id = "a-1"\nhardware = "plc-x"\n'
                      'firmware = "1.0.0"\nappliance_url = "http://127.0.0.1:1"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_AGENT_")}
    r = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--config", str(config)], capture_output=True,
                       text=True, timeout=60, check=False, env={**env, "AIRLOCK_AGENT_INTERVL": "30"})
    assert r.returncode == 0, r.stderr
    [line] = r.stderr.splitlines()
    assert line.endswith("AIRLOCK_AGENT_INTERVL is not a setting and is ignored; "
                         "did you mean AIRLOCK_AGENT_CHECKIN_INTERVAL?"), line
