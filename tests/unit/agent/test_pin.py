"""Which certificate an agent pins when it finds the appliance by mDNS.
Anyone on the LAN can answer mDNS, so once a device has pinned a
certificate, an answer advertising another one is refused; only the
device's own configuration (``tls_fingerprint``) changes the pin."""

from __future__ import annotations

import pytest

from agent.config import load_config
from agent.device import Agent
from agent.exceptions import UnreachableError
from agent.mdns import ApplianceInfo

OLD, NEW = "a" * 64, "b" * 64


def agent(tmp_path, **settings) -> Agent:
    config = load_config(None, {"state_dir": tmp_path / "state", "device_id": "pin-1", "hardware": "plc-x",
                                "firmware": "1.0.0", "mdns_enabled": True, **settings}, environ={})
    return Agent(config)


def found(tls: str | None) -> ApplianceInfo:
    scheme = "https" if tls else "http"
    return ApplianceInfo(f"{scheme}://127.0.0.1:8443", "appliance-1", "/api/v1", "/repos/", tls)


def test_the_first_advertised_certificate_is_pinned_and_remembered(tmp_path):
    a = agent(tmp_path)
    assert a._use_discovered(found(OLD)) == "https://127.0.0.1:8443"
    assert agent(tmp_path).state.appliance_tls == OLD  # kept across restarts


def test_another_certificate_from_mdns_is_refused_and_the_pin_kept(tmp_path):
    agent(tmp_path)._use_discovered(found(OLD))
    a = agent(tmp_path)
    with pytest.raises(UnreachableError, match=f"presents certificate sha256 {NEW}, not the one this device "
                                               f"pinned \\(sha256 {OLD}\\)"):
        a._use_discovered(found(NEW))
    assert agent(tmp_path).state.appliance_tls == OLD
    with pytest.raises(UnreachableError, match="offers plain http"):
        a._use_discovered(found(None))


def test_a_configured_fingerprint_replaces_the_remembered_pin(tmp_path):
    agent(tmp_path)._use_discovered(found(OLD))
    a = agent(tmp_path, tls_fingerprint=NEW)
    assert a._use_discovered(found(NEW)) == "https://127.0.0.1:8443"
    assert agent(tmp_path).state.appliance_tls == NEW
