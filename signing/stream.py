"""Chunked authenticated encryption of a stream (the STREAM construction):
one implementation for the encrypted export and the appliance's backup.

The plaintext is cut into chunks of ``chunk`` bytes, each sealed with an
AEAD under a nonce made of a random prefix, the chunk's counter and a
final-chunk flag, with the whole file header as associated data.  A changed
byte anywhere, a dropped, reordered or repeated chunk, a cut-off end and
data appended after the final chunk all fail authentication.  Each format
brings its own header and key (:mod:`signing.export`: X25519 to the vendor;
``appliance/backup/crypto.py``: a passphrase through scrypt) and its own
wording for a damaged file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag

TAG = 16  # bytes an AEAD (AES-GCM, ChaCha20-Poly1305) adds to each chunk


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def read_exactly(raw: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of ``raw``."""
    out = bytearray()
    while len(out) < n:
        data = raw.read(n - len(out))
        if not data:
            break
        out += data
    return bytes(out)


class SealingWriter:
    """A file-like ``write`` that seals chunk by chunk and passes the header,
    then each sealed chunk, to ``sink``; :meth:`close` seals the final chunk
    (0 to ``chunk`` bytes of plaintext)."""

    def __init__(self, sink: Callable[[bytes], object], aead: Aead, prefix: bytes, header: bytes, chunk: int):
        self.sink, self.aead, self.prefix, self.header, self.chunk = sink, aead, prefix, header, chunk
        self.buffer = bytearray()
        self.counter = 0
        self.sink(header)

    def write(self, data: bytes) -> int:
        self.buffer += data
        while len(self.buffer) > self.chunk:
            self._seal(bytes(self.buffer[: self.chunk]), final=False)
            del self.buffer[: self.chunk]
        return len(data)

    def _seal(self, plain: bytes, final: bool) -> None:
        self.sink(self.aead.encrypt(nonce(self.prefix, self.counter, final), plain, self.header))
        self.counter += 1

    def close(self) -> None:
        self._seal(bytes(self.buffer), final=True)
        self.buffer.clear()


class OpeningReader:
    """Reads the plaintext (``read(n)``), refusing at the first chunk that
    fails authentication with ``damaged(counter, short)``'s error;
    :attr:`done` is true once the final chunk has been read and opened."""

    def __init__(self, raw: BinaryIO, aead: Aead, prefix: bytes, header: bytes, chunk: int,
                 damaged: Callable[[int, bool], Exception]):
        self.raw, self.aead, self.prefix, self.header, self.chunk = raw, aead, prefix, header, chunk
        self.damaged = damaged
        self.counter = 0
        self.peek = b""
        self.plain = b""
        self.done = False

    def _next_chunk(self) -> None:
        block = self.peek + read_exactly(self.raw, self.chunk + TAG - len(self.peek))
        self.peek = self.raw.read(1)
        final = not self.peek
        if not final and len(block) != self.chunk + TAG:
            raise self.damaged(self.counter, True)
        try:
            self.plain = self.aead.decrypt(nonce(self.prefix, self.counter, final), block, self.header)
        except InvalidTag:
            raise self.damaged(self.counter, False) from None
        self.counter += 1
        self.done = final

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            if not self.plain:
                if self.done:
                    break
                self._next_chunk()
                continue
            take = len(self.plain) if n < 0 else min(n - len(out), len(self.plain))
            out += self.plain[:take]
            self.plain = self.plain[take:]
        return bytes(out)
