"""Small helpers shared by the device services: tokens and keys."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

TOKEN_BYTES = 32


def canonical_json(fields: dict) -> bytes:
    """The bytes an enrollment signature covers."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def new_token() -> tuple[str, str]:
    """(token, its sha256 hex): the token goes to the device once, only the hash is kept."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 hex of the raw public key: what IT compares with the device's label."""
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()
