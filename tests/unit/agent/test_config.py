"""The agent's configuration: layers (defaults < file < AIRLOCK_AGENT_* <
flags), and what happens to names that are not settings."""

from __future__ import annotations

import logging

import pytest

from agent.config import ENV_PREFIX, NOT_SETTINGS, load_config, nearest_setting
from agent.exceptions import ConfigError, UsageError

REQUIRED = {"device_id": "c-1", "hardware": "plc-x", "firmware": "1.0.0", "appliance_url": "http://127.0.0.1:9"}


@pytest.fixture
def toml(tmp_path):
    def write(text: str):
        path = tmp_path / "agent.toml"
        path.write_text(text)
        return path
    return write


def test_each_layer_overrides_the_one_before(toml):
    path = toml('device_id = "file-1"\nhardware = "plc-x"\nfirmware = "1.0.0"\nappliance_url = "http://127.0.0.1:9/"\n'
                'request_timeout = 5\ninstall_timeout = 60\nmdns_interfaces = ["10.0.0.2"]\n')
    config = load_config(path, {"install_timeout": 90, "device_id": None},
                         environ={"AIRLOCK_AGENT_REQUEST_TIMEOUT": "7", "AIRLOCK_AGENT_INSTALL_TIMEOUT": "70",
                                  "AIRLOCK_AGENT_MDNS_INTERFACES": "10.0.0.3, 10.0.0.4"})
    assert config.device_id == "file-1"  # a flag left out (None) does not override
    assert (config.request_timeout, config.install_timeout) == (7.0, 90.0)
    assert config.mdns_interfaces == ["10.0.0.3", "10.0.0.4"]
    assert config.max_install_attempts == 3 and config.appliance_url == "http://127.0.0.1:9"  # default; trimmed


def test_a_misspelt_variable_is_one_warning_naming_the_nearest_setting(caplog):
    caplog.set_level(logging.WARNING, logger="agent.config")
    environ = {"AIRLOCK_AGENT_INTERVL": "5", "AIRLOCK_AGENT_CHECKIN_INTERVAL": "9", "AIRLOCK_HOME": "/srv/airlock",
               "AIRLOCK_TARGET": "x", "PATH": "/bin"}
    config = load_config(None, REQUIRED, environ=environ)
    assert config.checkin_interval == 9.0  # the real one still applies; the misspelt one is ignored
    assert [r.getMessage() for r in caplog.records] == [
        "AIRLOCK_AGENT_INTERVL is not a setting and is ignored; did you mean AIRLOCK_AGENT_CHECKIN_INTERVAL?"]


def test_names_a_variable_must_be_spelt_exactly(caplog):
    caplog.set_level(logging.WARNING, logger="agent.config")
    config = load_config(None, REQUIRED, environ={"AIRLOCK_AGENT_log_level": "ERROR", "AIRLOCK_AGENT_COLOUR": "blue"})
    assert config.log_level == "INFO"
    assert [r.getMessage() for r in caplog.records] == [
        "AIRLOCK_AGENT_log_level is not a setting and is ignored; did you mean AIRLOCK_AGENT_LOG_LEVEL?",
        "AIRLOCK_AGENT_COLOUR is not a setting and is ignored; the settings are in docs/agent.md"]


def test_a_hostile_variable_name_is_escaped_and_bounded(caplog):
    caplog.set_level(logging.WARNING, logger="agent.config")
    load_config(None, REQUIRED, environ={"AIRLOCK_AGENT_\x1b[2J\u202e" + "X" * 500: "1"})
    [record] = caplog.records
    message = record.getMessage()
    assert "\x1b" not in message and "\u202e" not in message and "\\x1b[2J\\u202e" in message
    assert len(message) < 200


def test_the_legitimate_non_settings_are_listed():
    # every AIRLOCK_AGENT_* name is a setting today; the hook's variables have no AGENT_ in them
    assert not NOT_SETTINGS
    assert not any(name.startswith(ENV_PREFIX) for name in
                   ("AIRLOCK_TARGET", "AIRLOCK_VERSION", "AIRLOCK_RELEASE_ID", "AIRLOCK_REPOSITORY"))


def test_an_unknown_file_key_is_an_error_naming_the_nearest_setting(toml):
    path = toml('device_id = "c-1"\nchekin_interval = 5\ncolour = "blue"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (f"config {path}: unknown settings chekin_interval (did you mean checkin_interval?), "
                                 "colour; the settings are in docs/agent.md")
    assert isinstance(caught.value, UsageError)  # exit 2


@pytest.mark.parametrize(("settings", "message"), [
    ({"log_level": "loud"}, "log_level 'loud' is not DEBUG, INFO, WARNING or ERROR"),
    ({"device_id": "two words"}, "device_id 'two words' must match"),
    ({"appliance_url": "http://h:1/api"}, "must be http(s)://HOST:PORT"),
    ({"request_timeout": "0"}, "must be positive"),
    ({"mdns_enabled": "maybe"}, "setting mdns_enabled: 'maybe' is not a valid value"),
])
def test_bad_values_are_refused_at_load(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, {**REQUIRED, **settings}, environ={})


def test_log_level_is_case_insensitive():
    assert load_config(None, {**REQUIRED, "log_level": "debug"}, environ={}).log_level == "DEBUG"


def test_nearest_setting():
    assert nearest_setting("appliance_ulr") == "appliance_url"
    assert nearest_setting("statedir") == "state_dir"
    assert nearest_setting("colour") is None
