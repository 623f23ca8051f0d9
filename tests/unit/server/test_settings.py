"""server/settings.py: defaults < airlock.toml < AIRLOCK_* < flags; unknown
keys and variables refused with the nearest name; bad values refused with
a message naming the setting and where it came from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from server.settings import ENVIRONMENT_NOT_SETTINGS, SETTINGS, Settings, SettingsError, load_settings

NO_SYSTEM_FILE = Path("/nonexistent/airlock.toml")


def load(home: Path, environ: dict | None = None, overrides: dict | None = None,
         system_toml: Path = NO_SYSTEM_FILE) -> Settings:
    return load_settings(home, overrides, environ={} if environ is None else environ, system_toml=system_toml)


def refused(home: Path, **kwargs) -> str:
    with pytest.raises(SettingsError) as caught:
        load(home, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- layers -----------------------------------------------------------------

def test_defaults_when_nothing_is_set(tmp_path):
    s = load(tmp_path)
    for name, f in SETTINGS.items():
        if name != "home":
            assert getattr(s, name) == f.default, name
    assert s.home == tmp_path
    assert s.database_path == tmp_path / "airlock.db"


def test_each_layer_overrides_the_one_before(tmp_path):
    (tmp_path / "airlock.toml").write_text('checkin_interval = 120\ngrace_period = 10\nbind = "10.0.0.1:80"\n')
    toml_only = load(tmp_path)
    assert (toml_only.checkin_interval, toml_only.grace_period, toml_only.bind) == (120, 10, "10.0.0.1:80")
    env = {"AIRLOCK_CHECKIN_INTERVAL": "60", "AIRLOCK_BIND": "127.0.0.1:9000"}
    with_env = load(tmp_path, env)
    assert (with_env.checkin_interval, with_env.grace_period, with_env.bind) == (60, 10, "127.0.0.1:9000")
    with_flags = load(tmp_path, env, {"bind": "127.0.0.1:9100", "workers": None, "threads": 4})
    assert (with_flags.bind, with_flags.checkin_interval, with_flags.threads) == ("127.0.0.1:9100", 60, 4)
    assert with_flags.workers == 0  # a flag not given (None) leaves the layers below


def test_home_from_the_argument_else_airlock_home_else_the_default(tmp_path):
    other = tmp_path / "other"
    assert load(tmp_path, {"AIRLOCK_HOME": str(other)}).home == tmp_path
    assert load_settings(None, environ={"AIRLOCK_HOME": str(other)}, system_toml=NO_SYSTEM_FILE).home == other
    assert load_settings(None, environ={}, system_toml=NO_SYSTEM_FILE).home == Path("/var/lib/airlock")


def test_home_toml_is_read_from_the_home_named_by_airlock_home(tmp_path):
    (tmp_path / "airlock.toml").write_text("workers = 3\n")
    assert load_settings(None, environ={"AIRLOCK_HOME": str(tmp_path)}, system_toml=NO_SYSTEM_FILE).workers == 3


def test_the_system_file_is_read_when_the_home_has_none(tmp_path):
    system = tmp_path / "etc-airlock.toml"
    system.write_text("workers = 5\n")
    home = tmp_path / "home"
    home.mkdir()
    assert load(home, system_toml=system).workers == 5
    (home / "airlock.toml").write_text("workers = 2\n")
    assert load(home, system_toml=system).workers == 2  # the home's file, not both


# --- unknown keys and variables ---------------------------------------------

def test_an_unknown_key_in_the_file_is_refused_with_the_nearest(tmp_path):
    (tmp_path / "airlock.toml").write_text("checkin_intervall = 5\n")
    message = refused(tmp_path)
    assert "unknown setting 'checkin_intervall'" in message and "did you mean checkin_interval?" in message
    assert str(tmp_path / "airlock.toml") in message


def test_home_in_the_file_is_refused(tmp_path):
    (tmp_path / "airlock.toml").write_text('home = "/srv/airlock"\n')
    assert "use --home or AIRLOCK_HOME" in refused(tmp_path)


def test_malformed_toml_is_refused(tmp_path):
    (tmp_path / "airlock.toml").write_text("workers = \n")
    assert "not valid TOML" in refused(tmp_path)


def test_a_misspelt_variable_is_refused_with_the_nearest(tmp_path):
    message = refused(tmp_path, environ={"AIRLOCK_CHECKIN_INTERVL": "5"})
    assert message.startswith("environment: AIRLOCK_CHECKIN_INTERVL is not a setting; "
                              "did you mean AIRLOCK_CHECKIN_INTERVAL? unset it")


def test_a_variable_like_no_setting_gets_no_guess(tmp_path):
    message = refused(tmp_path, environ={"AIRLOCK_XYZZY": "1"})
    assert "AIRLOCK_XYZZY is not a setting" in message and "did you mean" not in message


def test_a_hostile_variable_name_is_shown_escaped_and_bounded(tmp_path):
    message = refused(tmp_path, environ={"AIRLOCK_\x1b[31m" + "X" * 500: "1"})
    assert "\x1b" not in message and len(message) < 300


def test_variables_of_the_other_tools_and_other_prefixes_are_left_alone(tmp_path):
    environ = dict.fromkeys(ENVIRONMENT_NOT_SETTINGS, "x")
    environ |= {"AIRLOCK_AGENT_DEVICE_ID": "plc-1", "AIRLOCK_AGENT_ANYTHING": "1", "AIRLOCKED": "1", "PATH": "/bin"}
    assert load(tmp_path, environ).checkin_interval == 300


def test_every_setting_has_its_variable(tmp_path):
    for name in SETTINGS:
        if name != "home":
            value = str(getattr(Settings(), name))
            load(tmp_path, {f"AIRLOCK_{name.upper()}": value})  # known, and its default is valid


# --- bad values -------------------------------------------------------------

@pytest.mark.parametrize(("source", "key", "value", "fragment"), [
    ("env", "workers", "four", "AIRLOCK_WORKERS: workers = 'four' is not a whole number"),
    ("toml", "workers", "true", "workers = True is not a whole number"),
    ("toml", "threads", "2.5", "threads = 2.5 is not a whole number"),
    ("toml", "mdns_interfaces", '["10.0.0.1"]', "mdns_interfaces = ['10.0.0.1'] is not a valid str"),
    ("env", "bind", "localhost", "bind 'localhost' is not HOST:PORT"),
    ("env", "bind", "127.0.0.1:70000", "is not HOST:PORT"),
    ("env", "workers", "-1", "workers must be 0"),
    ("env", "threads", "0", "threads must be at least 1"),
    ("env", "log_level", "LOUD", "log_level 'LOUD' is not DEBUG, INFO, WARNING or ERROR"),
    ("env", "metrics_raw_retention", "99999999999", "metrics retention must grow"),
    ("env", "mdns_enabled", "2", "mdns_enabled must be 0 or 1"),
    ("env", "mdns_interfaces", "0.0.0.0", "is not one interface's address"),
    ("env", "mdns_interfaces", "eth0", "'eth0' is not an IPv4 address"),
    ("env", "mdns_extra_types", "opcua", "is not a service type"),
    ("env", "public_url", "ftp://x", "public_url 'ftp://x' is not like http://HOST[:PORT][/PATH]"),
    ("env", "report_max_attachment_bytes", "99999999", "report_max_attachment_bytes must be 0 to 8388608"),
])
def test_a_bad_value_is_refused_naming_it(tmp_path, source, key, value, fragment):
    if source == "env":
        message = refused(tmp_path, environ={f"AIRLOCK_{key.upper()}": value})
    else:
        (tmp_path / "airlock.toml").write_text(f"{key} = {value}\n")
        message = refused(tmp_path)
    assert fragment in message


def test_a_bad_flag_is_refused_naming_the_flag(tmp_path):
    assert "--threads: threads = 'x' is not a whole number" in refused(tmp_path, overrides={"threads": "x"})


def test_settings_are_frozen(tmp_path):
    with pytest.raises(dataclasses.FrozenInstanceError):
        load(tmp_path).workers = 3  # type: ignore[misc]


def test_an_empty_or_file_home_is_refused_with_what_to_give(tmp_path):
    import pytest

    from server.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="--home is empty"):
        load_settings("", environ={})
    with pytest.raises(SettingsError, match="AIRLOCK_HOME is set but empty"):
        load_settings(None, environ={"AIRLOCK_HOME": ""})
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SettingsError, match="is a file, not a folder"):
        load_settings(tmp_path / "afile", environ={})
