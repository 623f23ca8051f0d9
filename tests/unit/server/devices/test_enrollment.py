"""Enrollment and admission over a real SQLite file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from server.devices import services
from server.devices._common import key_fingerprint
from server.devices.exceptions import (
    BadSignatureError,
    ConflictError,
    DeviceRefusedError,
    InvalidRequestError,
    InvalidTokenError,
    NotFoundError,
    ReplayError,
)
from server.devices.maintenance import run_maintenance
from server.devices.records import EnrollmentRequest
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted, counts, request_for


def test_new_device_is_pending_until_it_is_accepted_then_gets_a_token(settings, db):
    dev = SimDevice("plc-0001")
    first = services.enroll(settings, request_for(dev))
    assert (first.state, first.token) == ("pending", None)
    assert first.checkin_interval == settings.checkin_interval and first.jitter == settings.checkin_jitter
    again = services.enroll(settings, request_for(dev, firmware="1.0.1"))
    assert again.state == "pending"
    assert services.get_device(settings, "plc-0001").firmware == "1.0.1"

    services.accept("plc-0001", "it-alice")
    result = services.enroll(settings, request_for(dev))
    assert result.state == "accepted" and len(result.token) == 43
    assert services.authenticate(db, result.token).device_id == "plc-0001"


def test_each_enrollment_issues_a_new_token_and_revokes_the_previous(settings, db, home):
    dev = accepted(settings, SimDevice("plc-0002"))
    old = dev.token
    new = services.enroll(settings, request_for(dev)).token
    assert new != old
    with pytest.raises(InvalidTokenError):
        services.authenticate(db, old)
    assert services.authenticate(db, new).device_id == "plc-0002"
    stored = homedb.connect(home).execute("SELECT token_hash FROM device").fetchone()[0]
    assert stored == hashlib.sha256(new.encode()).hexdigest()  # only the hash is kept


def test_a_bad_signature_or_a_replay_stores_nothing(settings, db, home):
    dev = SimDevice("plc-0003")
    other = SimDevice("x")
    before = counts(home)
    with pytest.raises(BadSignatureError):
        services.enroll(settings, request_for(dev, sign_with=other.key))
    assert counts(home) == before

    body = dev.enrollment()
    services.enroll(settings, EnrollmentRequest(**body))
    after_first = counts(home)
    with pytest.raises(ReplayError):
        services.enroll(settings, EnrollmentRequest(**body))
    assert counts(home) == after_first


def test_a_tampered_field_breaks_the_signature(settings, db):
    dev = SimDevice("plc-0004")
    body = dev.enrollment()
    body["hardware"] = "plc-y"
    with pytest.raises(BadSignatureError):
        services.enroll(settings, EnrollmentRequest(**body))


def test_a_stale_timestamp_is_refused_with_the_servers_time(settings, db, home):
    dev = SimDevice("plc-0005")
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    with pytest.raises(InvalidRequestError) as info:
        services.enroll(settings, request_for(dev, timestamp=old))
    assert info.value.code == "clock_skew" and "server_time" in info.value.extra
    assert counts(home)["enrollment_nonce"] == 0


def test_a_known_id_with_a_new_key_stays_as_it_is_until_IT_decides(settings, db):
    dev = accepted(settings, SimDevice("plc-0006"))
    impostor = SimDevice("plc-0006")
    result = services.enroll(settings, request_for(impostor))
    assert result.state == "pending" and result.token is None
    assert services.authenticate(db, dev.token).device_id == "plc-0006"  # the old key's token still works
    shown = services.show_device(settings, "plc-0006")
    assert shown.summary.key_change_pending and "key_change_pending" in shown.summary.health
    assert [k.state for k in shown.keys] == ["active", "pending"]
    # the real device keeps its credential
    assert services.enroll(settings, request_for(dev)).state == "accepted"

    with pytest.raises(ConflictError):
        services.accept("plc-0006", "it", new_key=True, key_fingerprint_hex="0" * 64)
    services.reject("plc-0006", "it", new_key=True)
    with pytest.raises(DeviceRefusedError) as info:
        services.enroll(settings, request_for(impostor))
    assert info.value.extra["state"] == "key_rejected"


def test_accepting_a_new_key_retires_the_old_one_and_revokes_its_token(settings, db):
    dev = accepted(settings, SimDevice("plc-0007"))
    old_key, old_token = dev.key, dev.token
    dev.new_key()
    assert services.enroll(settings, request_for(dev)).state == "pending"
    services.accept("plc-0007", "it", new_key=True, key_fingerprint_hex=key_fingerprint(dev.public_key))
    with pytest.raises(InvalidTokenError):
        services.authenticate(db, old_token)
    token = services.enroll(settings, request_for(dev)).token
    assert services.authenticate(db, token).device_id == "plc-0007"
    old = SimDevice("plc-0007", key=old_key)
    with pytest.raises(DeviceRefusedError):
        services.enroll(settings, request_for(old))


def test_reject_and_decommission_revoke_the_token_at_once(settings, db):
    a = accepted(settings, SimDevice("plc-0008"))
    b = accepted(settings, SimDevice("plc-0009"))
    services.reject("plc-0008", "it", reason="not ours")
    services.decommission("plc-0009", "it")
    for dev in (a, b):
        with pytest.raises(InvalidTokenError):
            services.authenticate(db, dev.token)
    with pytest.raises(DeviceRefusedError) as info:
        services.enroll(settings, request_for(a))
    assert "not ours" in str(info.value) and info.value.extra["state"] == "rejected"
    with pytest.raises(DeviceRefusedError):
        services.enroll(settings, request_for(SimDevice("plc-0009")))  # nor with another key
    with pytest.raises(ConflictError):
        services.decommission("plc-0009", "it")
    services.accept("plc-0009", "it")  # IT may take a device back
    assert services.enroll(settings, request_for(b)).state == "accepted"


def test_admission_of_unknown_devices_and_states(settings, db):
    with pytest.raises(NotFoundError):
        services.accept("nobody", "it")
    accepted(settings, SimDevice("plc-0010"))
    with pytest.raises(ConflictError):
        services.accept("plc-0010", "it")
    with pytest.raises(ConflictError):
        services.reject("plc-0010", "it", new_key=True)
    with pytest.raises(InvalidRequestError):
        services.reject("plc-0010", "it", reason="bad\x1b[31m")


def test_auto_accept_needs_an_explicit_rule_matching_model_and_token(settings, db, home):
    token = "commission-2026-batch-7"

    def state(device_id, hardware="plc-x", tok=token):
        device = SimDevice(device_id, hardware=hardware)
        return services.enroll(settings, request_for(device, enrollment_token=tok)).state

    assert state("a-1") == "pending"  # no rule yet: never by default
    rule = services.add_rule("plc-x", token, "it")
    assert services.list_rules()[0].hardware == "plc-x"
    assert token not in homedb.all_text(home)  # only its SHA-256 is kept

    ok = services.enroll(settings, request_for(SimDevice("a-2"), enrollment_token=token))
    assert ok.state == "accepted" and ok.token
    assert state("a-3", tok="wrong-token-xyz1") == "pending"
    assert state("a-4", hardware="plc-y") == "pending"
    services.remove_rule(rule.id, "it")
    assert state("a-5") == "pending"
    with pytest.raises(NotFoundError):
        services.remove_rule(rule.id, "it")


def test_a_pending_device_with_the_token_is_accepted_but_a_key_change_never_is(settings, db):
    token = "commission-2026-batch-8"
    dev = SimDevice("b-1")
    services.enroll(settings, request_for(dev))
    services.add_rule("plc-x", token, "it")
    assert services.enroll(settings, request_for(dev, enrollment_token=token)).state == "accepted"
    thief = SimDevice("b-1")
    assert services.enroll(settings, request_for(thief, enrollment_token=token)).state == "pending"


def test_rule_tokens_must_be_long_enough(settings, db):
    with pytest.raises(InvalidRequestError):
        services.add_rule("plc-x", "short", "it")
    with pytest.raises(InvalidRequestError):
        services.add_rule("bad model!", "long-enough-token-123", "it")
    services.add_rule("plc-x", "long-enough-token-123", "it")
    with pytest.raises(ConflictError):
        services.add_rule("plc-x", "long-enough-token-123", "it")


def test_old_nonces_are_pruned_by_maintenance(settings, db, home):
    services.enroll(settings, request_for(SimDevice("c-1")))
    assert counts(home)["enrollment_nonce"] == 1
    run_maintenance(settings)
    assert counts(home)["enrollment_nonce"] == 1
    later = datetime.now(UTC) + timedelta(seconds=2 * settings.enrollment_max_skew + 5)
    assert run_maintenance(settings, later).nonces_pruned == 1
