"""Docs that a test keeps honest: every `airlock` command and every setting
is documented, with the default the code really has, and every document the
README names exists."""

import dataclasses
import re
from pathlib import Path

import click

from appliance.cli import cli
from server.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "operator-guide.md").read_text()


def command_paths(group: click.Group, prefix: str = "airlock"):
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from command_paths(command, path)
        else:
            yield path


def test_every_command_is_documented():
    missing = [p for p in command_paths(cli) if f"`{p}" not in GUIDE]
    assert not missing, f"document these in docs/operator-guide.md: {missing}"


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", GUIDE, flags=re.M))
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for name in SETTINGS:
        assert name in rows, f"setting {name} is not in the settings table of docs/operator-guide.md"
        assert rows[name] == str(defaults[name]), f"docs give {name} default {rows[name]}, code has {defaults[name]}"
    assert set(rows) <= set(SETTINGS), f"documented settings that do not exist: {set(rows) - set(SETTINGS)}"


def test_readme_links_exist():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (ROOT / link).exists(), link


def test_every_airlock_variable_that_is_no_setting_is_documented():
    from server.settings import AGENT_PREFIX, ENVIRONMENT_NOT_SETTINGS

    for name in [*ENVIRONMENT_NOT_SETTINGS, AGENT_PREFIX + "*"]:
        assert f"`{name}`" in GUIDE, f"docs/operator-guide.md does not say that {name} is no setting"
