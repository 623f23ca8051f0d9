"""The backup file's encryption: a passphrase, scrypt, AES-256-GCM in chunks.

Layout: a header (magic, scrypt salt and parameters, chunk size, a nonce
prefix, and a check value), then the plaintext in chunks of ``chunk`` bytes,
each sealed with AES-256-GCM under the scrypt-derived key.  Each chunk's
nonce is the prefix, its counter and a final-chunk flag, and every chunk
authenticates the whole header: a changed byte anywhere, a dropped,
reordered or repeated chunk, a cut-off end or data appended after the final
chunk all fail, and restore refuses.  The check value (HKDF of the scrypt
key) tells a wrong passphrase apart from a damaged file before anything is
decrypted.

scrypt N=2^17, r=8, p=1 (128 MiB, OWASP's floor), as for the vendor's keys
(``signing/keys.py``).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from signing.exceptions import AirlockError
from signing.stream import OpeningReader, SealingWriter, read_exactly

MAGIC = b"AIRLOCK-BACKUP-ENC1\n"
CHUNK = 1 << 20  # bytes of plaintext per chunk
SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
_MAX_LOG_N = 22  # refuse a header that would make us hash for minutes
_SALT, _PREFIX, _CHECK = 16, 7, 16
HEADER_SIZE = len(MAGIC) + _SALT + 1 + 1 + 1 + 4 + _PREFIX + _CHECK
MIN_PASSPHRASE = 12  # characters


class BackupCryptoError(AirlockError):
    """A backup file cannot be decrypted: wrong passphrase, or changed."""


def _keys(passphrase: bytes, salt: bytes, log_n: int, r: int, p: int) -> tuple[AESGCM, bytes]:
    master = Scrypt(salt=salt, length=32, n=1 << log_n, r=r, p=p).derive(passphrase)
    okm = HKDF(algorithm=hashes.SHA256(), length=32 + _CHECK, salt=salt,
               info=b"airlock backup v1").derive(master)
    return AESGCM(okm[:32]), okm[32:]


class EncryptingWriter(SealingWriter):
    """A file-like ``write`` that seals what it is given, chunk by chunk,
    and passes the ciphertext to ``sink``; :meth:`close` seals the final
    chunk (which may be empty)."""

    def __init__(self, sink: Callable[[bytes], object], passphrase: bytes, chunk: int = CHUNK):
        salt, prefix = os.urandom(_SALT), os.urandom(_PREFIX)
        aead, check = _keys(passphrase, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
        header = (MAGIC + salt + bytes([SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P]) + chunk.to_bytes(4, "big")
                  + prefix + check)
        super().__init__(sink, aead, prefix, header, chunk)


class DecryptingReader(OpeningReader):
    """Reads the plaintext of a backup file (``read(n)``), refusing at the
    first chunk that fails authentication.  :attr:`done` is true once the
    final chunk has been read and authenticated."""

    def __init__(self, raw: BinaryIO, passphrase: bytes, where: str):
        self.where = where
        header = read_exactly(raw, HEADER_SIZE)
        if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
            raise BackupCryptoError(f"{where} is not an Airlock backup (written by `airlock backup`)")
        at = len(MAGIC)
        salt = header[at: at + _SALT]
        log_n, r, p = header[at + _SALT: at + _SALT + 3]
        at += _SALT + 3
        chunk = int.from_bytes(header[at: at + 4], "big")
        prefix = header[at + 4: at + 4 + _PREFIX]
        check = header[at + 4 + _PREFIX:]
        if not (10 <= log_n <= _MAX_LOG_N and 1 <= r <= 32 and 1 <= p <= 16 and 1 <= chunk <= 64 << 20):
            raise BackupCryptoError(f"{where}: the backup's header is damaged (impossible parameters): "
                                    "use another copy")
        aead, expected = _keys(passphrase, salt, log_n, r, p)
        if not hmac.compare_digest(check, expected):
            raise BackupCryptoError(f"the passphrase does not open {where} (or its header was changed): give the "
                                    "passphrase the backup was made with")
        super().__init__(raw, aead, prefix, header, chunk, self._damaged)

    def _damaged(self, counter: int, short: bool) -> Exception:
        if short:
            return BackupCryptoError(f"{self.where} is damaged (a short chunk): use another copy")
        return BackupCryptoError(f"{self.where} fails authentication at chunk {counter}: it was changed, cut short "
                                 "or added to since it was written; nothing was restored: use another copy")

    def drain(self) -> int:
        """Read (and authenticate) everything left; bytes of plaintext left."""
        left = 0
        while data := self.read(CHUNK):
            left += len(data)
        return left
