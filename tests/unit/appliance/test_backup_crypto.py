"""The backup file's encryption (appliance/backup/crypto.py) with small
chunks, so that every kind of tampering is tried on a few bytes: a flipped
byte in the header, a chunk or the tag; chunks dropped, repeated or swapped;
a cut-off end; bytes appended; a wrong passphrase."""

import io

import pytest

from appliance.backup.crypto import HEADER_SIZE, BackupCryptoError, DecryptingReader, EncryptingWriter

PASS = b"correct horse battery staple"
CHUNK = 64
TAG = 16


def seal(plain: bytes, chunk: int = CHUNK) -> bytes:
    out = bytearray()
    writer = EncryptingWriter(out.extend, PASS, chunk=chunk)
    for i in range(0, len(plain), 50):  # writes that do not line up with chunks
        writer.write(plain[i: i + 50])
    writer.close()
    return bytes(out)


def open_(data: bytes, passphrase: bytes = PASS) -> bytes:
    reader = DecryptingReader(io.BytesIO(data), passphrase, "backup.enc")
    plain = reader.read()
    assert reader.done
    return plain


PLAIN = bytes(range(256)) * 2  # 512 bytes: 8 full chunks and an empty final one


def chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    body = data[HEADER_SIZE:]
    size = CHUNK + TAG
    return data[:HEADER_SIZE], [body[i: i + size] for i in range(0, len(body), size)]


def test_round_trip_any_length():
    for n in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, len(PLAIN)):
        assert open_(seal(PLAIN[:n])) == PLAIN[:n]


def test_the_passphrase_is_needed_and_nothing_of_the_plaintext_shows():
    data = seal(PLAIN)
    assert PLAIN[:32] not in data
    with pytest.raises(BackupCryptoError, match="passphrase does not open"):
        open_(data, b"another passphrase")


@pytest.mark.parametrize("at", [0, 25, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + CHUNK + 3, -1])
def test_a_flipped_byte_anywhere_fails(at):
    data = bytearray(seal(PLAIN))
    data[at] ^= 0x01
    with pytest.raises(BackupCryptoError):
        open_(bytes(data))


def test_chunks_dropped_repeated_swapped_cut_or_appended_fail():
    data = seal(PLAIN)
    header, parts = chunks(data)
    variants = {
        "dropped": header + b"".join(parts[:2] + parts[3:]),
        "repeated": header + b"".join(parts[:3] + parts[2:]),
        "swapped": header + b"".join([parts[1], parts[0], *parts[2:]]),
        "final chunk cut off": header + b"".join(parts[:-1]),
        "cut mid-chunk": data[:-5],
        "appended": data + b"\x00" * (CHUNK + TAG),
        "header only": header,
    }
    for what, variant in variants.items():
        with pytest.raises(BackupCryptoError):
            open_(variant)
            pytest.fail(what)


def test_not_a_backup():
    with pytest.raises(BackupCryptoError, match="not an Airlock backup"):
        open_(b"PK\x03\x04 a zip file" * 10)
