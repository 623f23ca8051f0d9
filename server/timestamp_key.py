"""The appliance's own TUF timestamp key.

A vendor's ``timestamp.json`` is short-lived by design, while USB deliveries
come every few weeks: when it expires, every device stops updating until the
next stick.  A vendor may therefore add this key to its root's timestamp role
(``airlock-sign authorize-appliance``); from then on ``airlock timestamp
refresh`` re-signs the timestamp before it expires (:mod:`server.freshness`).

An Ed25519 key (tuf-js refuses RSA PKCS#1 v1.5), made by ``airlock init`` for
new and existing homes alike (and by ``timestamp refresh`` if still missing),
kept in ``HOME/timestamp-key.pem``: mode 0600, PKCS#8, unencrypted (the
appliance signs unattended, from a timer), written whole or not at all.  It
never leaves the appliance; its public half does, in the TUF key form the
vendor's tools take (``airlock keys show --timestamp``, and
``timestamp-key.json`` in every export), kept beside it as
``HOME/timestamp-key.json`` so that what only reads (``airlock status``, a
user who may read the home but not the key) knows its key id.

With it the appliance can keep a vendor's snapshot fresh, or withhold
updates by letting it lapse; it can never change which files are genuine:
snapshot and targets stay signed by the vendor's keys alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey

from server.settings import Settings
from signing.durable import write_atomic
from signing.exceptions import AirlockError, KeyStoreError
from signing.keys import PrivateKeyFileError, load_public_key, read_ed25519_private_key

KEY_FILE = "timestamp-key.pem"
PUBLIC_FILE = "timestamp-key.json"  # its name in exports, and what the docs tell IT to save it as


class TimestampKeyError(AirlockError):
    """The appliance's timestamp key is missing or unreadable."""


@dataclass(frozen=True)
class TimestampPublicKey:
    keyid: str
    key: SSlibKey

    def to_dict(self) -> dict:
        """The TUF key form (securesystemslib): what ``airlock-sign
        authorize-appliance`` and any TUF tool's ``add_key`` take."""
        return {"keyid": self.keyid, "keytype": self.key.keytype, "scheme": self.key.scheme,
                "keyval": dict(self.key.keyval)}

    def file_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode()


def key_path(settings: Settings) -> Path:
    return settings.home / KEY_FILE


def public_path(settings: Settings) -> Path:
    return settings.home / PUBLIC_FILE


def ensure_timestamp_key(settings: Settings) -> bool:
    """Make the key, and its public file, if missing; True when the key was made."""
    path = key_path(settings)
    made = False
    if not os.path.lexists(path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:  # whole or not at all: a crash must not leave a half key that never loads
            write_atomic(path, pem, mode=0o600, overwrite=False)
            made = True
        except FileExistsError:
            pass  # made meanwhile by another process
    public = SSlibKey.from_crypto(_private_key(settings).public_key())
    data = TimestampPublicKey(public.keyid, public).file_bytes()
    if made or not os.path.lexists(public_path(settings)) or public_path(settings).read_bytes() != data:
        write_atomic(public_path(settings), data, mode=0o644)
    return made


def _private_key(settings: Settings) -> Ed25519PrivateKey:
    path = key_path(settings)
    try:
        return read_ed25519_private_key(path, "the appliance's timestamp key")
    except PrivateKeyFileError as exc:
        if exc.kind == "missing":
            raise TimestampKeyError(f"the appliance has no timestamp key ({path}): run `airlock init` to make it") \
                from None
        remedy = ": restore it from backup" if exc.kind == "not-ed25519" else ""
        raise TimestampKeyError(f"{exc}{remedy}") from None


def timestamp_signer(settings: Settings) -> CryptoSigner:
    """A signer with the appliance's timestamp key."""
    return CryptoSigner(_private_key(settings))


def timestamp_public_key(settings: Settings) -> TimestampPublicKey:
    """Its public half, with its TUF key id (from the public file: no need
    to read the private key)."""
    path = public_path(settings)
    if not os.path.lexists(path):
        raise TimestampKeyError(f"the appliance has no timestamp key ({path}): run `airlock init` to make it")
    try:
        key = load_public_key(path)
    except KeyStoreError as exc:
        raise TimestampKeyError(f"{exc}: run `airlock init` to write it again from the key") from None
    return TimestampPublicKey(key.keyid, key)
