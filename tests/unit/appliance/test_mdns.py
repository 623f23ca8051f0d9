"""mDNS configuration: loopback only unless told otherwise, validated
settings, what is advertised, and which code a device's side may import."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from appliance.mdns import appliance_service_info, config_from_settings
from appliance.mdns_supervisor import start_supervised
from server.settings import Settings, SettingsError, load_settings


@pytest.fixture
def home(tmp_path):
    (tmp_path / "appliance-id").write_text("airlock-0123abcd\n")
    return tmp_path


def test_default_settings_use_only_loopback(home):
    assert Settings().mdns_interfaces == "127.0.0.1"
    settings = load_settings(home, environ={})
    assert settings.mdns_enabled == 1
    assert all(ipaddress.ip_address(a).is_loopback for a in settings.mdns_interface_list)
    config = config_from_settings(settings)
    assert config.interfaces == ["127.0.0.1"] and config.http_addresses == ["127.0.0.1"]
    assert config.browse_types == ["_airlock-device._tcp.local."]
    assert (config.http_port, config.gone_after, config.probe_every) == (8080, 600.0, 120.0)


def test_configured_interfaces_types_and_bind(home):
    settings = load_settings(home, {"bind": "0.0.0.0:9000"}, environ={
        "AIRLOCK_MDNS_INTERFACES": "10.20.0.5, 10.30.0.5",
        "AIRLOCK_MDNS_EXTRA_TYPES": "_opcua-tcp._tcp, _http._tcp.local., _opcua-tcp._tcp",
        "AIRLOCK_MDNS_GONE_AFTER": "3"})
    config = config_from_settings(settings)
    assert config.interfaces == ["10.20.0.5", "10.30.0.5"]
    assert config.http_addresses == config.interfaces  # serving on every address: advertise the mDNS ones
    assert config.browse_types == ["_airlock-device._tcp.local.", "_opcua-tcp._tcp.local.", "_http._tcp.local."]
    assert (config.http_port, config.probe_every) == (9000, 1.0)
    bound = config_from_settings(load_settings(home, {"bind": "10.20.0.5:8080"}, environ={
        "AIRLOCK_MDNS_INTERFACES": "10.20.0.5"}))
    assert bound.http_addresses == ["10.20.0.5"]


@pytest.mark.parametrize("name, value", [
    ("AIRLOCK_MDNS_INTERFACES", "0.0.0.0"),
    ("AIRLOCK_MDNS_INTERFACES", ""),
    ("AIRLOCK_MDNS_INTERFACES", "eth0"),
    ("AIRLOCK_MDNS_INTERFACES", "224.0.0.251"),
    ("AIRLOCK_MDNS_EXTRA_TYPES", "opcua"),
    ("AIRLOCK_MDNS_EXTRA_TYPES", "_opcua-tcp._sctp"),
    ("AIRLOCK_MDNS_EXTRA_TYPES", "_name-far-too-long-for-rfc6335._tcp"),
    ("AIRLOCK_MDNS_ENABLED", "2"),
    ("AIRLOCK_MDNS_GONE_AFTER", "0"),
])
def test_bad_mdns_settings_are_refused(home, name, value):
    with pytest.raises(SettingsError, match=name.removeprefix("AIRLOCK_").lower()):
        load_settings(home, environ={name: value})


def test_advertised_service(home):
    info = appliance_service_info(config_from_settings(load_settings(home, environ={})))
    assert info.type == "_airlock._tcp.local." and info.name == "airlock-0123abcd._airlock._tcp.local."
    assert info.properties == {b"api": b"/api/v1", b"repos": b"/repos/", b"id": b"airlock-0123abcd"}
    assert (info.port, info.parsed_addresses()) == (8080, ["127.0.0.1"])


def test_no_mdns_process_when_disabled(home):
    assert start_supervised(load_settings(home, environ={"AIRLOCK_MDNS_ENABLED": "0"})) is None


def test_no_appliance_id_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="airlock init"):
        config_from_settings(load_settings(tmp_path, environ={}))


def loaded_top_levels(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted({{n.split('.')[0] for n in sys.modules}})))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout.split())


def test_device_side_imports_only_what_a_device_has():
    loaded = loaded_top_levels("agent.mdns")
    assert "zeroconf" in loaded
    assert not loaded & {"flask", "werkzeug", "peewee", "click", "gunicorn", "server", "appliance", "signing"}


def test_discovery_service_imports_no_mdns_library():
    assert "zeroconf" not in loaded_top_levels("server.discovery.services")


def test_with_a_certificate_the_appliance_advertises_tls_and_nginx_port(home):
    from appliance.tls import create_self_signed

    settings = load_settings(home, environ={"AIRLOCK_TLS_PORT": "8443", "AIRLOCK_MDNS_INTERFACES": "10.20.0.5"})
    info = create_self_signed(settings, ["10.20.0.5"])
    advertised = appliance_service_info(config_from_settings(settings))
    assert advertised.properties[b"tls"] == info.fingerprint.encode()
    # the app listens on loopback; nginx serves HTTPS on the LAN address
    assert (advertised.port, advertised.parsed_addresses()) == (8443, ["10.20.0.5"])


@pytest.mark.parametrize("tls, url, pin", [
    (None, "http://10.20.0.5:8080", None),
    ("ab" * 32, "https://10.20.0.5:8080", "ab" * 32),
    ("AB" * 32, None, None),  # not lowercase hex: not an appliance, never plain http instead
    ("", None, None),
    ("ab" * 31, None, None),
])
def test_the_agent_reads_the_tls_key_strictly(tls, url, pin):
    import socket

    from zeroconf import ServiceInfo

    from agent.mdns import _appliance_from

    props = {"api": "/api/v1", "repos": "/repos/", "id": "airlock-1"}
    if tls is not None:
        props["tls"] = tls
    info = ServiceInfo("_airlock._tcp.local.", "a._airlock._tcp.local.", port=8080, properties=props,
                       addresses=[socket.inet_aton("10.20.0.5")])
    found = _appliance_from(info)
    assert (found.url, found.tls) == (url, pin) if url else found is None
