"""The appliance's own identity key: an Ed25519 key that signs its exports.

Created by ``airlock init`` if missing, kept in ``HOME/appliance-key.pem``
(mode 0600, PKCS#8, unencrypted: the appliance signs unattended; the file is
readable only by the appliance's user, and never exported).  Its public half
goes into every export (``appliance.pub``) for first contact, and
``airlock keys show`` prints it for the vendor to keep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.settings import Settings
from signing.durable import write_atomic
from signing.exceptions import AirlockError
from signing.export import key_fingerprint, public_key_file
from signing.keys import PrivateKeyFileError, read_ed25519_private_key

KEY_FILE = "appliance-key.pem"


class IdentityError(AirlockError):
    """The appliance's identity key is missing or unreadable."""


@dataclass
class ApplianceIdentity:
    appliance_id: str
    public_pem: str
    fingerprint: str  # sha256 hex of the raw public key
    public_file: bytes  # what `airlock keys show` prints and exports carry as appliance.pub


def key_path(settings: Settings) -> Path:
    return settings.home / KEY_FILE


def ensure_key(settings: Settings) -> bool:
    """Create the key if there is none; True when it was created."""
    path = key_path(settings)
    if os.path.lexists(path):
        return False
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:  # whole or not at all: a crash must not leave a half key that never loads
        write_atomic(path, pem, mode=0o600, overwrite=False)
    except FileExistsError:
        return False  # made meanwhile by another process
    return True


def load_key(settings: Settings) -> Ed25519PrivateKey:
    path = key_path(settings)
    try:
        return read_ed25519_private_key(path, "the appliance's identity key")
    except PrivateKeyFileError as exc:
        if exc.kind == "missing":
            raise IdentityError(f"the appliance has no identity key ({path}): run `airlock init`") from None
        raise IdentityError(str(exc)) from None


def public_identity(settings: Settings, appliance_id: str) -> ApplianceIdentity:
    public = load_key(settings).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ApplianceIdentity(appliance_id, pem.decode(), key_fingerprint(public), public_key_file(appliance_id, public))
