"""The device's identity: an Ed25519 key pair made once and kept in the
state folder (private key mode 0600), and the signed enrollment request of
docs/device-api.md."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent._files import write_atomic
from agent.exceptions import StateError

KEY_FILE = "device.key"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical(fields: dict) -> bytes:
    """Keys sorted, no whitespace, ASCII: what the signature covers."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def load_or_create_key(state_dir: Path) -> Ed25519PrivateKey:
    """The device key, generated on first use and never replaced."""
    path = state_dir / KEY_FILE
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_atomic(path, pem, 0o600)
        return key
    try:
        loaded = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise StateError(f"{path} is not a readable private key ({exc}): restore the device's key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise StateError(f"{path} does not hold an Ed25519 private key: restore the device's key (a new key "
                         "is a new device to the appliance, which plant IT must accept again)")
    return loaded


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_fingerprint(key: Ed25519PrivateKey) -> str:
    """SHA-256 hex of the raw public key, as `airlock devices show` prints it."""
    return hashlib.sha256(base64.b64decode(public_key_b64(key))).hexdigest()


def enrollment_request(key: Ed25519PrivateKey, device_id: str, hardware: str, firmware: str,
                       enrollment_token: str | None = None, timestamp: str | None = None) -> dict:
    fields = {"device_id": device_id, "hardware": hardware, "firmware": firmware,
              "public_key": public_key_b64(key), "nonce": secrets.token_hex(16),
              "timestamp": timestamp or utc_now()}
    if enrollment_token:
        fields["enrollment_token"] = enrollment_token
    return {**fields, "signature": base64.b64encode(key.sign(canonical(fields))).decode()}
