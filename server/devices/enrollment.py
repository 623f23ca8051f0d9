"""Enrollment and admission: who a device is, and whether IT lets it in.

A device proves possession of its Ed25519 key by signing each enrollment
request (canonical JSON of every other field).  A nonce seen before for a key
is a replay: refused, nothing stored; nonces are kept twice as long as the
allowed clock skew, so a replay is refused by one check or the other.  Only an
accepted device gets a bearer token, kept as its SHA-256; every enrollment of
an accepted device issues a new token and so revokes the previous one.  A
known device id presenting a new key never replaces the old key: the new key
waits for IT (``airlock devices accept ID --new-key``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from peewee import Field, IntegrityError

from server import audit
from server.clock import iso, utcnow
from server.db import connected, engine_of, retryable, sqlstate
from server.devices._common import canonical_json, key_fingerprint, new_token
from server.devices.exceptions import (
    BadSignatureError,
    ClockSkewError,
    ConflictError,
    DeviceRefusedError,
    InvalidRequestError,
    NotFoundError,
    ReplayError,
)
from server.devices.models import AutoAcceptRule, Device, DeviceKey, EnrollmentNonce
from server.devices.openapi import ENROLLMENT_TOKEN, HARDWARE
from server.devices.records import EnrollmentRequest, EnrollmentResult, RuleInfo
from server.devices.writes import writing
from server.models import database
from server.settings import Settings
from server.text import escape_text, refusal
from server.timekeeping import trusted_now

logger = logging.getLogger(__name__)

MIN_RULE_TOKEN = 16  # characters of a pre-shared enrollment token
_HARDWARE = re.compile(HARDWARE.strip("^$"))
_TOKEN = re.compile(ENROLLMENT_TOKEN.strip("^$"))


def _result(settings: Settings, state: str, *, token: str | None = None, reason: str | None = None):
    return EnrollmentResult(state, settings.checkin_interval, settings.checkin_jitter, token, reason)


def verify_request(req: EnrollmentRequest) -> None:
    """Raise unless the signature verifies with the key the request carries."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(req.public_key, validate=True))
        key.verify(base64.b64decode(req.signature, validate=True), canonical_json(req.signed_fields()))
    except (InvalidSignature, ValueError):
        raise BadSignatureError("the signature does not verify with public_key: sign the canonical JSON "
                                "(sorted keys, no spaces) of every other field with the device's key") from None


def _check_clock(settings: Settings, req: EnrollmentRequest, now: datetime) -> None:
    stamp = datetime.fromisoformat(req.timestamp.replace("Z", "+00:00"))
    if abs((now - stamp).total_seconds()) > settings.enrollment_max_skew:
        raise ClockSkewError(
            f"timestamp {req.timestamp} is more than {settings.enrollment_max_skew} s from the appliance's "
            f"clock ({iso(now)}): set the device's clock (server_time) and sign a new request",
            server_time=iso(now))


def _rule_digest(token: str) -> str:
    """How an auto-accept rule keeps its token, and how a request's is compared."""
    return hashlib.sha256(token.encode()).hexdigest()


def _auto_accept_rule(hardware: str, token: str | None) -> int | None:
    """The id of a rule matching ``hardware`` and ``token``, compared in constant time."""
    if token is None:
        return None
    digest = _rule_digest(token)
    match = None
    for rule in AutoAcceptRule.select().where(AutoAcceptRule.hardware == hardware):
        if hmac.compare_digest(rule.token_sha256, digest) and match is None:
            match = rule.id
    return match


RETRIES = 2  # PostgreSQL: times an enrollment aborted as a deadlock or serialization failure runs again


def enroll(settings: Settings, req: EnrollmentRequest, *, now: datetime | None = None) -> EnrollmentResult:
    """Handle one (verified-format) enrollment request; see the module doc.

    On PostgreSQL two boxes enrolling the same new device can deadlock, in
    a narrow case: one holds its new device row and waits for the writers'
    lock (its audit record), while the other, on the serial path for the
    same device id (its own short path found something changed, e.g. the
    rule removed), holds that lock and inserts the id.  PostgreSQL aborts
    one of them whole, and that one runs again from the start, now seeing
    what the other wrote, instead of answering 500."""
    verify_request(req)
    for attempt in range(RETRIES + 1):
        try:
            with connected(database):  # one connection for the clock's mark and the transaction
                return _enroll(settings, req, now)
        except Exception as exc:
            if attempt == RETRIES or not retryable(exc):
                raise
            logger.info("an enrollment of device %s was aborted by the database (%s); running it again",
                        escape_text(req.device_id), sqlstate(exc))
    raise AssertionError("unreachable")  # pragma: no cover


def _enroll(settings: Settings, req: EnrollmentRequest, now: datetime | None) -> EnrollmentResult:
    # the device's clock is judged against the appliance's, so the appliance's must be one it trusts
    now = trusted_now(settings, "enrollment", now)
    _check_clock(settings, req, now)
    stamp = iso(now)
    plan = _plan(req)
    if plan is not None:
        result = _write_planned(settings, plan, req, now, stamp)
        if result is not None:
            return result
    with writing(database):
        _insert_nonce(req, now)
        device = Device.get_or_none(Device.device_id == req.device_id)
        if device is None:
            return _new_device(settings, req, stamp)
        key = DeviceKey.get_or_none((DeviceKey.device == device) & (DeviceKey.public_key == req.public_key))
        if key is None:
            if device.state in ("rejected", "decommissioned"):
                raise _refused(device)
            DeviceKey.create(device=device, public_key=req.public_key, state="pending", created_at=stamp)
            logger.warning("device %s presented a new key %s: waiting for IT", device.device_id,
                           key_fingerprint(req.public_key)[:16])
            return _result(settings, "pending", reason="this device id is enrolled with another key; the new "
                                                       "key waits for IT to accept it")
        if key.state == "pending":
            return _result(settings, "pending", reason="the new key waits for IT to accept it")
        if key.state in ("rejected", "retired"):
            raise DeviceRefusedError(f"this key was {key.state} for device {device.device_id}: ask IT",
                                     state=f"key_{key.state}")
        return _known_device(settings, device, req, stamp)


def _insert_nonce(req: EnrollmentRequest, now: datetime) -> None:
    try:
        EnrollmentNonce.insert(public_key=req.public_key, nonce=req.nonce.lower(),
                               seen_at=int(now.timestamp())).execute()
    except IntegrityError:
        raise ReplayError("this nonce was already used with this key: a replayed request is refused; "
                          "sign a new request with a fresh random nonce") from None


# The two common enrollments, a new device and an accepted device asking for a
# new token, are read first, outside the write transaction, and written in a
# short one whose every write is conditional on what was read: a device that
# appeared meanwhile (its id is unique), a rule removed, a device or key whose
# state changed.  Then nothing of it is kept and the serial path above decides
# from scratch.  On SQLite the transaction holds the one write lock, and each
# statement in it may wait for the worker's GIL behind busy request threads,
# so fewer statements there keep every other writer waiting less
# (docs/benchmarks.md); on PostgreSQL it runs beside other enrollments and
# check-ins, and only its audit record waits for the writers' lock.

@dataclass(frozen=True)
class _Plan:
    device: int | None  # the device row's id; None: a new device
    key: int | None  # its active key's row id
    rule: int | None  # a new device: the auto-accept rule it matches


class _Changed(Exception):
    """What the plan read changed before its writes: the serial path decides."""


_INSERT_DEVICE = ("INSERT INTO device (device_id, hardware, firmware, state, state_reason, state_changed_at, "
                  "state_changed_by, token_hash, token_issued_at, enrolled_at, last_enroll_at) ")
_NEW_PENDING = _INSERT_DEVICE + "VALUES (?, ?, ?, 'pending', NULL, ?, 'device', NULL, NULL, ?, ?)"
# Accepted only while the rule is there: one statement reads it and inserts.
# Every condition names the row by its content as well as its id: on SQLite
# the id of a deleted newest row is handed out again, so a rule removed and
# one added for another token, or a device removed and another enrolled, may
# have the id the plan read.
_RULE = "auto_accept_rule WHERE id = ? AND hardware = ? AND token_sha256 = ?"
_NEW_ACCEPTED = _INSERT_DEVICE + "SELECT ?, ?, ?, 'accepted', ?, ?, ?, ?, ?, ?, ? FROM " + _RULE
_NEW_KEY = "INSERT INTO device_key (device, public_key, state, created_at) VALUES (?, ?, 'active', ?)"
_REISSUE = ("UPDATE device SET firmware = ?, last_enroll_at = ?, token_hash = ?, token_issued_at = ? "
            "WHERE id = ? AND device_id = ? AND state = 'accepted' AND EXISTS (SELECT 1 FROM device_key "
            "WHERE id = ? AND device = ? AND public_key = ? AND state = 'active')")
# PostgreSQL: the device row locked first.  An admission that changes the
# device (reject, decommission, remove: the key rows go with the device) or
# its keys and then the device (accept a new key) then waits for this
# enrollment, or this one sees it; and the key is read by _REISSUE's own
# statement, never waited for, so no lock is taken in the other order.
_LOCK_DEVICE = "SELECT 1 FROM device WHERE id = ? AND device_id = ? AND state = 'accepted' FOR UPDATE"


def _plan(req: EnrollmentRequest) -> _Plan | None:
    """Reads only: the plan for ``req``, or None for the serial path."""
    device = Device.select(Device.id, Device.state).where(Device.device_id == req.device_id).tuples().first()
    if device is None:
        return _Plan(None, None, _auto_accept_rule(req.hardware, req.enrollment_token))
    if device[1] != "accepted":
        return None
    key = DeviceKey.select(DeviceKey.id).where((DeviceKey.device == device[0]) &
                                               (DeviceKey.public_key == req.public_key) &
                                               (DeviceKey.state == "active")).tuples().first()
    return _Plan(device[0], key[0], None) if key is not None else None


def _write_planned(settings: Settings, plan: _Plan, req: EnrollmentRequest, now: datetime,
                   stamp: str) -> EnrollmentResult | None:
    """The plan's writes in one transaction, or None (nothing kept) if what it read changed."""
    postgresql = engine_of(database) == "postgresql"
    token, digest = new_token() if plan.device is not None or plan.rule is not None else (None, None)
    try:
        with writing(database, serial=False):
            _insert_nonce(req, now)
            if plan.device is None:
                _write_new(plan, req, stamp, digest, postgresql)
            else:
                if postgresql and not database.execute_sql(_LOCK_DEVICE, (plan.device, req.device_id)).fetchone():
                    raise _Changed
                if database.execute_sql(_REISSUE, (req.firmware, stamp, digest, stamp, plan.device, req.device_id,
                                                   plan.key, plan.device, req.public_key)).rowcount != 1:
                    raise _Changed
    except _Changed:
        return None
    if plan.device is not None:
        return _result(settings, "accepted", token=token)
    if plan.rule is not None:
        logger.info("device %s (%s) auto-accepted by rule %s", req.device_id, req.hardware, plan.rule)
        return _result(settings, "accepted", token=token)
    logger.info("device %s (%s) enrolled: pending", req.device_id, req.hardware)
    return _result(settings, "pending", reason="waiting for IT to accept this device")


def _write_new(plan: _Plan, req: EnrollmentRequest, stamp: str, digest: str | None, postgresql: bool) -> None:
    rule = plan.rule
    params: tuple
    if rule is None:
        sql, params = _NEW_PENDING, (req.device_id, req.hardware, req.firmware, stamp, stamp, stamp)
    else:
        matching = (rule, req.hardware, _rule_digest(req.enrollment_token or ""))  # _RULE's parameters
        sql, params = _NEW_ACCEPTED, (req.device_id, req.hardware, req.firmware, f"auto-accepted by rule {rule}",
                                      stamp, f"rule {rule}", digest, stamp, stamp, stamp, *matching)
    try:
        if postgresql:
            row = database.execute_sql(sql + " RETURNING id", params).fetchone()
            pk = row[0] if row else None
        else:
            cursor = database.execute_sql(sql, params)
            pk = cursor.lastrowid if cursor.rowcount == 1 else None
    except IntegrityError:  # the device enrolled meanwhile
        raise _Changed from None
    if pk is None:  # the rule was removed meanwhile
        raise _Changed
    database.execute_sql(_NEW_KEY, (pk, req.public_key, stamp))
    if rule is None:
        return
    if not postgresql:  # the transaction holds SQLite's one write lock: the rule read above still holds
        _audit_auto_accept(rule, req)
    # PostgreSQL: the audit chain's lock first, then the rule once more, so a removal before us is seen
    elif not audit.record_if(_RULE, matching, *_auto_accept_record(rule, req)):
        raise _Changed


def _new_device(settings: Settings, req: EnrollmentRequest, stamp: str) -> EnrollmentResult:
    rule = _auto_accept_rule(req.hardware, req.enrollment_token)
    token = token_digest = None
    if rule is not None:
        token, token_digest = new_token()
    device = Device.create(
        device_id=req.device_id, hardware=req.hardware, firmware=req.firmware,
        state="accepted" if rule is not None else "pending",
        state_reason=f"auto-accepted by rule {rule}" if rule is not None else None,
        state_changed_at=stamp, state_changed_by=f"rule {rule}" if rule is not None else "device",
        token_hash=token_digest, token_issued_at=stamp if token else None,
        enrolled_at=stamp, last_enroll_at=stamp)
    DeviceKey.create(device=device, public_key=req.public_key, state="active", created_at=stamp)
    if rule is not None:
        _audit_auto_accept(rule, req)
        logger.info("device %s (%s) auto-accepted by rule %s", req.device_id, req.hardware, rule)
        return _result(settings, "accepted", token=token)
    logger.info("device %s (%s) enrolled: pending", req.device_id, req.hardware)
    return _result(settings, "pending", reason="waiting for IT to accept this device")


def _known_device(settings: Settings, device: Device, req: EnrollmentRequest, stamp: str) -> EnrollmentResult:
    if device.state in ("rejected", "decommissioned"):
        raise _refused(device)
    changes: dict[Field, str] = {Device.firmware: req.firmware, Device.last_enroll_at: stamp}
    if device.state == "pending":
        rule = _auto_accept_rule(device.hardware, req.enrollment_token) if req.hardware == device.hardware else None
        if rule is None:
            Device.update(changes).where(Device.id == device.id).execute()
            return _result(settings, "pending", reason="waiting for IT to accept this device")
        changes.update({Device.state: "accepted", Device.state_reason: f"auto-accepted by rule {rule}",
                        Device.state_changed_at: stamp, Device.state_changed_by: f"rule {rule}"})
        _audit_auto_accept(rule, req)
    token, digest = new_token()
    changes.update({Device.token_hash: digest, Device.token_issued_at: stamp})
    Device.update(changes).where(Device.id == device.id).execute()
    return _result(settings, "accepted", token=token)


def _auto_accept_record(rule: int, req: EnrollmentRequest) -> tuple[str, str, str, dict]:
    return (f"rule {rule}", "device.auto_accept", req.device_id,
            {"hardware": req.hardware, "key_sha256": key_fingerprint(req.public_key)})


def _audit_auto_accept(rule: int, req: EnrollmentRequest) -> None:
    audit.record(*_auto_accept_record(rule, req))


def _refused(device: Device) -> DeviceRefusedError:
    why = f": {device.state_reason}" if device.state_reason else ""
    return DeviceRefusedError(f"device {device.device_id} was {device.state} by IT{why}", state=device.state)


# admission ---------------------------------------------------------------------

def _device(device_id: str) -> Device:
    device = Device.get_or_none(Device.device_id == device_id)
    if device is None:
        raise NotFoundError(f"no device {device_id!r} has enrolled: see `airlock devices list`")
    return device


def _check_reason(reason: str | None) -> str | None:
    if reason is not None and len(reason) > 500:
        raise InvalidRequestError(f"the reason is {len(reason)} characters; at most 500 are allowed")
    problem = refusal("the reason", reason or "")
    if problem:
        raise InvalidRequestError(problem)
    return reason or None


def _pending_key(device: Device, key_fingerprint_hex: str | None) -> DeviceKey:
    pending = list(DeviceKey.select().where((DeviceKey.device == device) & (DeviceKey.state == "pending"))
                   .order_by(DeviceKey.id))
    if not pending:
        raise ConflictError(f"device {device.device_id} has no pending key change")
    if key_fingerprint_hex:
        chosen = [k for k in pending if key_fingerprint(k.public_key) == key_fingerprint_hex.lower()]
        if not chosen:
            raise ConflictError(f"no pending key of {device.device_id} has fingerprint {key_fingerprint_hex}; "
                                "see `airlock devices show ID`")
        return chosen[0]
    if len(pending) > 1:
        raise ConflictError(f"device {device.device_id} has {len(pending)} pending keys: choose one with "
                            "--key-fingerprint (see `airlock devices show ID`)")
    return pending[0]


def accept(device_id: str, operator: str, *, new_key: bool = False, key_fingerprint_hex: str | None = None,
           reason: str | None = None) -> None:
    """Accept a device (it gets a token at its next enrollment), or its pending key.

    Accepting a new key retires the old one and revokes the device's token,
    so only the holder of the new key can get a credential.
    """
    reason = _check_reason(reason)
    stamp = iso(utcnow())
    with writing(database):
        device = _device(device_id)
        audit.record(operator, "device.accept_key" if new_key else "device.accept", device_id, {"reason": reason})
        if new_key:
            key = _pending_key(device, key_fingerprint_hex)
            DeviceKey.update(state="retired", decided_at=stamp, decided_by=operator).where(
                (DeviceKey.device == device) & (DeviceKey.state == "active")).execute()
            DeviceKey.update(state="active", decided_at=stamp, decided_by=operator).where(
                DeviceKey.id == key.id).execute()
            Device.update(token_hash=None, token_issued_at=None).where(Device.id == device.id).execute()
            logger.warning("device %s: key %s accepted by %s", device_id, key_fingerprint(key.public_key)[:16],
                           operator)
            return
        if device.state == "accepted":
            raise ConflictError(f"device {device_id} is already accepted"
                                + ("; to accept its new key add --new-key" if _has_pending_key(device) else ""))
        DeviceKey.update(decided_at=stamp, decided_by=operator).where(
            (DeviceKey.device == device) & (DeviceKey.state == "active")).execute()
        _set_state(device, "accepted", reason, operator, stamp)
    logger.info("device %s accepted by %s", device_id, operator)


def reject(device_id: str, operator: str, *, new_key: bool = False, reason: str | None = None) -> None:
    """Reject a device (its token stops working at once), or its pending key change."""
    reason = _check_reason(reason)
    stamp = iso(utcnow())
    with writing(database):
        device = _device(device_id)
        audit.record(operator, "device.reject_key" if new_key else "device.reject", device_id, {"reason": reason})
        if new_key:
            if not _has_pending_key(device):
                raise ConflictError(f"device {device_id} has no pending key change")
            DeviceKey.update(state="rejected", decided_at=stamp, decided_by=operator).where(
                (DeviceKey.device == device) & (DeviceKey.state == "pending")).execute()
            return
        if device.state == "rejected":
            raise ConflictError(f"device {device_id} is already rejected")
        _set_state(device, "rejected", reason, operator, stamp)
    logger.info("device %s rejected by %s", device_id, operator)


def decommission(device_id: str, operator: str, *, reason: str | None = None) -> None:
    """Retire a device: its token stops working at once; it can come back only if IT accepts it again."""
    reason = _check_reason(reason)
    stamp = iso(utcnow())
    with writing(database):
        device = _device(device_id)
        audit.record(operator, "device.decommission", device_id, {"reason": reason})
        if device.state == "decommissioned":
            raise ConflictError(f"device {device_id} is already decommissioned")
        _set_state(device, "decommissioned", reason, operator, stamp)
    logger.info("device %s decommissioned by %s", device_id, operator)


def _has_pending_key(device: Device) -> bool:
    return DeviceKey.select().where((DeviceKey.device == device) & (DeviceKey.state == "pending")).exists()


def _set_state(device: Device, state: str, reason: str | None, operator: str, stamp: str) -> None:
    changes = {Device.state: state, Device.state_reason: reason, Device.state_changed_at: stamp,
               Device.state_changed_by: operator}
    if state != "accepted":
        changes.update({Device.token_hash: None, Device.token_issued_at: None})
    Device.update(changes).where(Device.id == device.id).execute()


# auto-acceptance rules ---------------------------------------------------------------

def add_rule(hardware: str, token: str, operator: str, note: str = "") -> RuleInfo:
    """Auto-accept new devices of ``hardware`` enrolling with ``token`` (kept only as its SHA-256)."""
    if not _HARDWARE.fullmatch(hardware or ""):
        raise InvalidRequestError(f"hardware {hardware!r} is not a model name (letters, digits, '.', '_', '-')")
    if not _TOKEN.fullmatch(token or "") or len(token) < MIN_RULE_TOKEN:
        raise InvalidRequestError(f"the enrollment token must be {MIN_RULE_TOKEN} to 128 printable ASCII "
                                  "characters without spaces (e.g. `openssl rand -base64 24`)")
    note = _check_reason(note) or ""
    with writing(database):
        try:
            row = AutoAcceptRule.create(hardware=hardware, token_sha256=_rule_digest(token),
                                        note=note, created_at=iso(utcnow()), created_by=operator)
        except IntegrityError:
            raise ConflictError(f"a rule for {hardware} with this token exists already") from None
        audit.record(operator, "device.auto_accept_rule.add", f"rule {row.id}", {"hardware": hardware, "note": note})
    logger.warning("auto-accept rule %s added for %s by %s", row.id, hardware, operator)
    return _rule(row)


def list_rules() -> list[RuleInfo]:
    return [_rule(r) for r in AutoAcceptRule.select().order_by(AutoAcceptRule.id)]


def remove_rule(rule_id: int, operator: str) -> RuleInfo:
    with writing(database):
        row = AutoAcceptRule.get_or_none(AutoAcceptRule.id == rule_id)
        if row is None:
            raise NotFoundError(f"no auto-accept rule {rule_id}: see `airlock devices auto-accept list`")
        row.delete_instance()
        audit.record(operator, "device.auto_accept_rule.remove", f"rule {rule_id}", {"hardware": row.hardware})
    logger.warning("auto-accept rule %s removed by %s", rule_id, operator)
    return _rule(row)


def _rule(row: AutoAcceptRule) -> RuleInfo:
    return RuleInfo(row.id, row.hardware, row.note, row.created_at, row.created_by)


def prune_nonces(settings: Settings, now: datetime) -> int:
    """Forget nonces whose requests would now be refused for their timestamp anyway."""
    cutoff = int((now - timedelta(seconds=2 * settings.enrollment_max_skew)).timestamp())
    with writing(database):
        return EnrollmentNonce.delete().where(EnrollmentNonce.seen_at < cutoff).execute()
