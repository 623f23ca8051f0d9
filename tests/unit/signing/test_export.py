"""signing.export on its own: the chunked encryption, the audit hash, the
vendor's export key, and the archive reader against hostile tar files."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signing.exceptions import KeyStoreError
from signing.export import (
    AUDIT_GENESIS,
    DecryptingReader,
    EncryptingWriter,
    ExportError,
    audit_hash,
    check_continuity,
    generate_export_key,
    load_export_private_key,
    public_key_file,
    read_export,
    read_public_key_file,
    verify_export,
)

CHUNK = 64  # bytes: small, so that tests cross many chunk boundaries


def encrypt(plain: bytes, key: X25519PrivateKey, chunk: int = CHUNK) -> bytes:
    out = bytearray()
    writer = EncryptingWriter(out.extend, key.public_key(), chunk)
    for i in range(0, len(plain), 50):  # writes that do not line up with chunks
        writer.write(plain[i:i + 50])
    writer.close()
    return bytes(out)


def decrypt(blob: bytes, key: X25519PrivateKey) -> bytes:
    return DecryptingReader(io.BytesIO(blob), key).read()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 1000])
def test_encryption_round_trip(size):
    key = X25519PrivateKey.generate()
    plain = bytes(range(256)) * 4
    plain = plain[:size]
    blob = encrypt(plain, key)
    assert plain[:16] not in blob[100:] or size < 16
    assert decrypt(blob, key) == plain


def test_truncation_reordering_and_appending_fail():
    key = X25519PrivateKey.generate()
    blob = encrypt(b"x" * (4 * CHUNK + 10), key)
    header, body = blob[:88], blob[88:]
    step = CHUNK + 16
    chunks = [body[i:i + step] for i in range(0, len(body), step)]
    assert len(chunks) == 5
    cases = {
        "truncated at a chunk boundary": header + b"".join(chunks[:3]),
        "truncated inside a chunk": blob[:-5],
        "two chunks swapped": header + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "a chunk dropped": header + chunks[0] + b"".join(chunks[2:]),
        "data appended": blob + b"more",
        "a final chunk appended twice": blob + chunks[-1],
        "header changed": header[:-1] + bytes([header[-1] ^ 1]) + body,
    }
    for what, bad in cases.items():
        with pytest.raises(ExportError):
            decrypt(bad, key)
            pytest.fail(what)


def test_wrong_key_is_named():
    blob = encrypt(b"data", X25519PrivateKey.generate())
    with pytest.raises(ExportError, match="encrypted to another key"):
        decrypt(blob, X25519PrivateKey.generate())


def test_audit_hash_is_canonical():
    rec = {"at": "2026-01-01T00:00:00+00:00", "actor": "it", "action": "device.accept", "subject": "d1",
           "details": {"b": 1, "a": "x"}}
    again = dict(reversed(list(rec.items())), details={"a": "x", "b": 1}, id=7, hash="ignored")
    assert audit_hash(AUDIT_GENESIS, rec) == audit_hash(AUDIT_GENESIS, again)
    assert audit_hash(AUDIT_GENESIS, rec) != audit_hash("1" * 64, rec)
    assert audit_hash(AUDIT_GENESIS, rec) != audit_hash(AUDIT_GENESIS, {**rec, "actor": "mallory"})


def test_export_key_file(tmp_path):
    pub = generate_export_key(tmp_path / "vendor.key", b"secret phrase")
    assert (tmp_path / "vendor.key").stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PUBLIC KEY" in pub.read_bytes()
    assert b"secret phrase" not in (tmp_path / "vendor.key").read_bytes()
    key = load_export_private_key(tmp_path / "vendor.key", b"secret phrase")
    assert isinstance(key, X25519PrivateKey)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_export_private_key(tmp_path / "vendor.key", b"wrong")
    with pytest.raises(KeyStoreError, match="already exists"):
        generate_export_key(tmp_path / "vendor.key", b"secret phrase")


def test_public_key_file_round_trip():
    key = Ed25519PrivateKey.generate().public_key()
    appliance, parsed = read_public_key_file(public_key_file("airlock-abc", key))
    assert appliance == "airlock-abc" and parsed == key


# hostile archives --------------------------------------------------------------------------

def _export(tmp_path, extra=(), *, files=None):
    """A small genuinely signed export, plus ``extra`` raw (TarInfo, bytes) members."""
    key = Ed25519PrivateKey.generate()
    files = files if files is not None else {"devices.jsonl": b'{"device":"d1"}\n'}
    pub = public_key_file("airlock-t", key.public_key())
    listed = {"appliance.pub": pub, **files}
    manifest = {"format": "airlock-export", "format_version": 1, "appliance_id": "airlock-t",
                "appliance_key_sha256": hashlib.sha256(key.public_key().public_bytes_raw()).hexdigest(),
                "sequence": 1, "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                                         for n, d in listed.items()]}
    mbytes = json.dumps(manifest).encode()
    path = tmp_path / "e.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in [("manifest.json", mbytes), ("manifest.sig", base64.b64encode(key.sign(mbytes))),
                           *listed.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    (tmp_path / "app.pub").write_bytes(pub)
    return path, tmp_path / "app.pub"


def _member(name, kind=tarfile.REGTYPE, data=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    return info, (data if kind == tarfile.REGTYPE else None)


def test_a_genuine_export_verifies_and_unpacks(tmp_path):
    from signing.export import unpack_export

    path, pub = _export(tmp_path)
    assert verify_export(path, pub).files == 2
    unpack_export(path, tmp_path / "out", pub)
    assert (tmp_path / "out" / "devices.jsonl").read_bytes() == b'{"device":"d1"}\n'


@pytest.mark.parametrize("member,reason", [
    (_member("../escape.jsonl"), "unsafe name"),
    (_member("/etc/cron.d/x"), "unsafe name"),
    (_member("a/../../b"), "unsafe name"),
    (_member("evil\x1b[2J.jsonl"), "unsafe name"),
    (_member("link.jsonl", tarfile.SYMTYPE, linkname="/etc/passwd"), "not a regular file"),
    (_member("hard.jsonl", tarfile.LNKTYPE, linkname="devices.jsonl"), "not a regular file"),
    (_member("fifo", tarfile.FIFOTYPE), "not a regular file"),
    (_member("dev", tarfile.CHRTYPE), "not a regular file"),
    (_member("devices.jsonl"), "twice"),
])
def test_hostile_members_are_refused(tmp_path, member, reason):
    path, pub = _export(tmp_path, [member])
    with pytest.raises(ExportError, match=reason) as exc:
        verify_export(path, pub, extract_to=None)
    assert "\x1b" not in str(exc.value)
    out = tmp_path / "out"
    from signing.export import unpack_export

    with pytest.raises(ExportError):
        unpack_export(path, out, pub)
    assert not out.exists() and not (tmp_path / "escape.jsonl").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_not_an_archive(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x00" * 10 + b"not a tar" * 100)
    with pytest.raises(ExportError):
        read_export(tmp_path / "junk")


def test_continuity_reasons():
    prev = {"appliance_id": "a", "sequence": 4}
    sha = "ab" * 32
    assert check_continuity({"appliance_id": "a", "sequence": 5, "previous_manifest_sha256": sha}, prev, sha)
    with pytest.raises(ExportError, match="replayed or older"):
        check_continuity({"appliance_id": "a", "sequence": 4, "previous_manifest_sha256": sha}, prev, sha)
    with pytest.raises(ExportError, match="export 5 to 6 is missing"):
        check_continuity({"appliance_id": "a", "sequence": 7, "previous_manifest_sha256": sha}, prev, sha)
    with pytest.raises(ExportError, match="does not chain"):
        check_continuity({"appliance_id": "a", "sequence": 5, "previous_manifest_sha256": "00" * 32}, prev, sha)
    with pytest.raises(ExportError, match="from appliance"):
        check_continuity({"appliance_id": "b", "sequence": 5, "previous_manifest_sha256": sha}, prev, sha)
