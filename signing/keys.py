"""Signing keys on disk: generate, save encrypted, load.

A key file is JSON: the public key as TUF writes it (``keytype``, ``scheme``,
``keyid``, ``keyval``) plus ``encrypted_private_key``, a PKCS#8 PEM encrypted
with cryptography's ``BestAvailableEncryption``.  The PEM password is not the
passphrase itself but a key stretched from it with scrypt (parameters and
salt in ``kdf``): PKCS#8's own PBKDF2 runs only 2048 rounds, far too few for
a root key that may be stolen from a backup.  A public key file is the same
JSON without the private part; it is what a person hands over to be
authorized for a role.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from securesystemslib.signer import CryptoSigner, SSlibKey

from signing.durable import write_atomic
from signing.exceptions import KeyStoreError

KEY_TYPES = ("ed25519", "ecdsa")
# scrypt cost for new key files (OWASP: N >= 2**17 with r=8, p=1); loading
# uses the parameters stored in the file.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
MAX_KEY_FILE = 64 * 1024  # bytes
_MAX_SCRYPT_N = 2**22  # refuse files that would make us hash for minutes


def generate_signer(key_type: str = "ed25519") -> CryptoSigner:
    """A new key pair: ``ed25519`` or ``ecdsa`` (ecdsa-sha2-nistp256)."""
    if key_type == "ed25519":
        return CryptoSigner.generate_ed25519()
    if key_type == "ecdsa":
        return CryptoSigner.generate_ecdsa()
    raise KeyStoreError(
        f"key type {key_type!r} is not supported: use one of {', '.join(KEY_TYPES)}"
    )


def _public_dict(key: SSlibKey) -> dict[str, Any]:
    return {"keytype": key.keytype, "scheme": key.scheme, "keyid": key.keyid, "keyval": dict(key.keyval)}


def _scrypt(passphrase: bytes, params: dict[str, Any]) -> bytes:
    """The PEM password: scrypt of the passphrase, base64 so it is printable."""
    try:
        salt = base64.b64decode(params["salt"], validate=True)
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
    except (KeyError, TypeError, ValueError) as e:
        raise KeyStoreError(f"key file has a malformed 'kdf' entry ({e})") from None
    if params.get("name") != "scrypt" or not (2 <= n <= _MAX_SCRYPT_N) or not (1 <= r <= 32) or not (1 <= p <= 16):
        raise KeyStoreError("key file asks for an unsupported key derivation: re-create the key")
    derived = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)
    return base64.b64encode(derived)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, durably, never overwriting; the
    content is only ever visible with ``mode``."""
    try:
        write_atomic(path, data, mode=mode, overwrite=False)
    except FileExistsError:
        raise KeyStoreError(f"{path} already exists: refusing to overwrite a key file") from None
    except OSError as e:
        raise KeyStoreError(f"cannot write key file {path}: {e.strerror}") from None


def save_key(signer: CryptoSigner, path: Path | str, passphrase: bytes) -> None:
    """Write ``signer`` as an encrypted key file (mode 0600), never overwriting."""
    path = Path(path)
    if not passphrase:
        raise KeyStoreError("an empty passphrase is not allowed for a key file")
    kdf = {
        "name": "scrypt",
        "salt": base64.b64encode(os.urandom(16)).decode(),
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
    }
    pem = signer._private_key.private_bytes(  # CryptoSigner keeps no other handle
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(_scrypt(passphrase, kdf)),
    )
    doc = _public_dict(signer.public_key)
    doc["kdf"] = kdf
    doc["encrypted_private_key"] = pem.decode("ascii")
    _write_new(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise KeyStoreError(f"key file {path} does not exist") from None
    except OSError as e:
        raise KeyStoreError(f"cannot read key file {path}: {e.strerror}") from None
    if len(raw) > MAX_KEY_FILE:
        raise KeyStoreError(f"{path} is too large to be a key file")
    if raw.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        return {"pem": raw}
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyStoreError(f"{path} is not a key file (not JSON)") from None
    if not isinstance(doc, dict):
        raise KeyStoreError(f"{path} is not a key file")
    return doc


def _public_from_doc(doc: dict[str, Any], path: Path) -> SSlibKey:
    if "pem" in doc:  # a bare SubjectPublicKeyInfo PEM, as other tools export
        try:
            return SSlibKey.from_crypto(serialization.load_pem_public_key(doc["pem"]))
        except (ValueError, TypeError) as e:
            raise KeyStoreError(f"{path}: unsupported public key ({e})") from None
    try:
        fields = {k: doc[k] for k in ("keytype", "scheme", "keyval")}
        key = SSlibKey.from_dict(str(doc["keyid"]), fields)
        key._crypto_key()  # parses the public value
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise KeyStoreError(f"{path} is not a valid key file ({type(e).__name__}: {e})") from None
    expected = SSlibKey.from_crypto(key._crypto_key(), scheme=key.scheme).keyid
    if key.keyid != expected:
        raise KeyStoreError(f"{path}: key id {key.keyid} does not match the key (expected {expected})")
    if (key.keytype, key.scheme) not in (("ed25519", "ed25519"), ("ecdsa", "ecdsa-sha2-nistp256")):
        raise KeyStoreError(
            f"{path}: key type {key.keytype}/{key.scheme} is not supported (ed25519 or ecdsa-sha2-nistp256)"
        )
    return key


def load_public_key(path: Path | str) -> SSlibKey:
    """The public key of a key file or of a public-key-only file (JSON or PEM)."""
    path = Path(path)
    return _public_from_doc(_read_json(path), path)


def load_signer(path: Path | str, passphrase: bytes) -> CryptoSigner:
    """Decrypt a key file into a signer."""
    path = Path(path)
    doc = _read_json(path)
    public = _public_from_doc(doc, path)
    pem = doc.get("encrypted_private_key")
    if not isinstance(pem, str):
        raise KeyStoreError(f"{path} holds only a public key: a private key file is needed to sign")
    password = _scrypt(passphrase, doc["kdf"]) if "kdf" in doc else passphrase
    try:
        private = serialization.load_pem_private_key(pem.encode("ascii"), password=password)
    except (ValueError, TypeError):
        raise KeyStoreError(f"cannot decrypt {path}: wrong passphrase (or a damaged key file)") from None
    try:
        return CryptoSigner(private, public)
    except Exception as e:  # KeyMismatchError, ValueError
        raise KeyStoreError(f"{path}: private and public key do not belong together ({e})") from None


class PrivateKeyFileError(KeyStoreError):
    """An unencrypted private key file that cannot be used; ``kind`` says
    why: ``missing``, ``unreadable``, ``damaged`` or ``not-ed25519``."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def read_ed25519_private_key(path: Path, name: str) -> Ed25519PrivateKey:
    """The Ed25519 key in the unencrypted PKCS#8 PEM file ``path`` (the
    appliance's own keys, which it uses unattended), read without following
    a link.  ``name`` (for example ``the appliance's identity key``) is how
    an unreadable file is named in :class:`PrivateKeyFileError`'s message;
    a missing one is for the caller to word."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise PrivateKeyFileError(f"{name} {path} does not exist", "missing") from None
    except OSError as exc:
        raise PrivateKeyFileError(f"cannot read {name} {path}: {exc.strerror}", "unreadable") from None
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_KEY_FILE)
    except OSError as exc:  # a folder where the file belongs opens, and fails here
        raise PrivateKeyFileError(f"cannot read {name} {path}: {exc.strerror}", "unreadable") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PrivateKeyFileError(f"{path} is not a readable private key: restore it from backup", "damaged") \
            from None
    if not isinstance(key, Ed25519PrivateKey):
        raise PrivateKeyFileError(f"{path} is not an Ed25519 key", "not-ed25519")
    return key


def save_public_key(key: SSlibKey, path: Path | str) -> None:
    """Write the public key file a person hands over (never overwriting)."""
    _write_new(Path(path), (json.dumps(_public_dict(key), indent=2) + "\n").encode(), 0o644)
