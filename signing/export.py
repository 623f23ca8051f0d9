"""Appliance exports on the vendor's side: the format, its encryption, and the
reader behind ``airlock-sign export verify|show|unpack|keygen``.

An export is one tar file (``airlock-export-<appliance-id>-<NNNNNN>.tar``)
holding ``manifest.json`` (first), ``manifest.sig`` (Ed25519 over the
manifest's bytes, base64), ``appliance.pub`` and JSON Lines files.  The
manifest lists every other file with its size and SHA-256, and chains to the
previous export by the SHA-256 of its manifest, so that a dropped, added,
changed, replayed or foreign export is detected.  Optionally the whole tar is
encrypted to the vendor's X25519 key (``.tar.enc``): X25519 with an ephemeral
key, HKDF-SHA256, then AES-256-GCM in chunks whose nonces carry a counter and
a final-chunk flag, so that truncation, reordering and appending all fail.

The archive is untrusted input: it is read as a stream, member by member,
regular files with safe names only, with caps on count and sizes; nothing is
extracted by :mod:`tarfile` itself.  The appliance writes exports with the
same format code (``appliance.export``), so there is one definition of it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.exceptions import AirlockError, KeyStoreError
from signing.keys import MAX_KEY_FILE, SCRYPT_N, SCRYPT_P, SCRYPT_R, _scrypt, _write_new
from signing.paths import check_target_path, show
from signing.stream import OpeningReader, SealingWriter, read_exactly

FORMAT = "airlock-export"
FORMAT_VERSION = 1
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "appliance.pub"
EXPORT_KEY_TARGET = "airlock/export-key.pub"  # the vendor's X25519 key, a target of a pinned repository
MAX_MANIFEST = 16 << 20  # bytes
MAX_SMALL_FILE = 64 << 10  # bytes: manifest.sig, appliance.pub
MAX_MEMBERS = 1_000_000
MAX_MEMBER_BYTES = 1 << 40  # bytes
AUDIT_GENESIS = "0" * 64
AUDIT_FIELDS = ("at", "actor", "action", "subject", "details")

ENC_MAGIC = b"AIRLOCK-EXPORT-ENC1\n"
ENC_CHUNK = 1 << 20  # bytes of plaintext per chunk
ENC_INFO = b"airlock export encryption v1"
_HEADER = len(ENC_MAGIC) + 32 + 32 + 4
READ_CHUNK = 1 << 20


class ExportError(AirlockError):
    """An export cannot be read, or fails verification."""


# shared by both sides --------------------------------------------------------------

def raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(key: Ed25519PublicKey | X25519PublicKey) -> str:
    """SHA-256 hex of the raw public key."""
    return hashlib.sha256(raw_public(key)).hexdigest()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def audit_body(record: dict) -> bytes:
    """What a record's hash covers after the previous hash and a newline:
    the canonical JSON of its fields (at, actor, action, subject, details)."""
    return canonical({k: record[k] for k in AUDIT_FIELDS})


def audit_hash(previous: str, record: dict) -> str:
    """A record's hash: SHA-256 of the previous hash, a newline, and
    :func:`audit_body`."""
    return hashlib.sha256(previous.encode("ascii") + b"\n" + audit_body(record)).hexdigest()


def public_key_file(appliance_id: str, key: Ed25519PublicKey) -> bytes:
    """``appliance.pub``: the appliance id and fingerprint as comments, then the PEM."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (f"# airlock appliance {appliance_id}\n# sha256 {key_fingerprint(key)}\n").encode() + pem


def read_public_key_file(data: bytes, where: str = "key file") -> tuple[str | None, Ed25519PublicKey]:
    """(appliance id or None, key) from an ``appliance.pub`` or a bare PEM."""
    appliance = None
    for line in data.splitlines()[:4]:
        if line.startswith(b"# airlock appliance "):
            appliance = line[len(b"# airlock appliance "):].decode("ascii", "replace").strip()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ExportError(f"{where} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ExportError(f"{where} is not an Ed25519 public key (an appliance's key is Ed25519)")
    return appliance, key


# encryption -------------------------------------------------------------------------

def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> tuple[AESGCM, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=32 + 7, salt=ephemeral + recipient, info=ENC_INFO).derive(shared)
    return AESGCM(okm[:32]), okm[32:]


class EncryptingWriter(SealingWriter):
    """A file-like ``write`` that encrypts to ``recipient`` in chunks and
    passes the ciphertext to ``sink`` (a callable taking bytes)."""

    def __init__(self, sink, recipient: X25519PublicKey, chunk: int = ENC_CHUNK):
        ephemeral = X25519PrivateKey.generate()
        eph_raw, rec_raw = raw_public(ephemeral.public_key()), raw_public(recipient)
        aead, prefix = _derive(ephemeral.exchange(recipient), eph_raw, rec_raw)
        header = ENC_MAGIC + eph_raw + hashlib.sha256(rec_raw).digest() + chunk.to_bytes(4, "big")
        super().__init__(sink, aead, prefix, header, chunk)


class DecryptingReader(OpeningReader):
    """Reads the plaintext of an encrypted export; any truncation, reordering,
    appended data or change raises :class:`ExportError`."""

    def __init__(self, raw, private_key: X25519PrivateKey):
        header = read_exactly(raw, _HEADER)
        if len(header) < _HEADER or not header.startswith(ENC_MAGIC):
            raise ExportError("not an encrypted Airlock export (bad header)")
        eph_raw = header[len(ENC_MAGIC): len(ENC_MAGIC) + 32]
        rec_digest = header[len(ENC_MAGIC) + 32: len(ENC_MAGIC) + 64]
        chunk = int.from_bytes(header[-4:], "big")
        if not 1 <= chunk <= 64 << 20:
            raise ExportError("encrypted export has an impossible chunk size")
        rec_raw = raw_public(private_key.public_key())
        if hashlib.sha256(rec_raw).digest() != rec_digest:
            raise ExportError(f"the export is encrypted to another key (sha256 {rec_digest.hex()[:16]}...), not to "
                              f"this decryption key ({hashlib.sha256(rec_raw).hexdigest()[:16]}...)")
        try:
            shared = private_key.exchange(X25519PublicKey.from_public_bytes(eph_raw))
        except ValueError:
            raise ExportError("encrypted export has an invalid ephemeral key") from None
        aead, prefix = _derive(shared, eph_raw, rec_raw)
        super().__init__(raw, aead, prefix, header, chunk, _damaged_export)


def _damaged_export(counter: int, short: bool) -> Exception:
    if short:
        return ExportError("encrypted export is damaged (short chunk)")
    return ExportError(f"encrypted export fails authentication at chunk {counter}: it was changed, truncated or "
                       "reordered")


def is_encrypted(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(ENC_MAGIC)) == ENC_MAGIC


# the vendor's export key ----------------------------------------------------------------

def generate_export_key(out: Path, passphrase: bytes) -> Path:
    """Write an X25519 key pair: ``OUT`` (private, passphrase-encrypted, 0600)
    and ``OUT.pub`` (PEM), the file to ship as target ``airlock/export-key.pub``."""
    out = Path(out)
    pub = out.with_name(out.name + ".pub")
    for p in (out, pub):
        if os.path.lexists(p):
            raise KeyStoreError(f"{p} already exists: refusing to overwrite a key file")
    if not passphrase:
        raise KeyStoreError("an empty passphrase is not allowed for a key file")
    key = X25519PrivateKey.generate()
    kdf = {"name": "scrypt", "salt": base64.b64encode(os.urandom(16)).decode(), "n": SCRYPT_N, "r": SCRYPT_R,
           "p": SCRYPT_P}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(_scrypt(passphrase, kdf)))
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = {"type": "airlock-export-key", "fingerprint": key_fingerprint(key.public_key()),
           "public_key": public_pem.decode(), "kdf": kdf, "encrypted_private_key": pem.decode()}
    _write_new(out, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    _write_new(pub, public_pem, 0o644)
    return pub


def load_export_private_key(path: Path, passphrase: bytes) -> X25519PrivateKey:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEY_FILE + 1)
        doc = json.loads(raw)
        pem, kdf = doc["encrypted_private_key"].encode("ascii"), doc["kdf"]
    except OSError as e:
        raise KeyStoreError(f"cannot read key file {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyStoreError(f"{path} is not an export key file from `airlock-sign export keygen`") from None
    try:
        key = serialization.load_pem_private_key(pem, password=_scrypt(passphrase, kdf))
    except (ValueError, TypeError):
        raise KeyStoreError(f"cannot decrypt {path}: wrong passphrase (or a damaged key file)") from None
    if not isinstance(key, X25519PrivateKey):
        raise KeyStoreError(f"{path} does not hold an X25519 key")
    return key


def load_export_public_key(data: bytes, where: str) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ExportError(f"{where} is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise ExportError(f"{where} is not an X25519 public key: make one with `airlock-sign export keygen`")
    return key


# reading an export -----------------------------------------------------------------------

@dataclass
class Member:
    name: str
    size: int
    sha256: str


@dataclass
class ExportContents:
    """What a pass over an export found (nothing checked against the manifest yet)."""

    encrypted: bool
    members: list[Member] = field(default_factory=list)
    manifest_bytes: bytes = b""
    signature: bytes = b""
    public_key: bytes = b""
    audit_problem: str | None = None  # from re-computing the chain in audit.jsonl
    audit_ends: tuple[str, str] | None = None  # (first prev_hash, last hash)

    @property
    def manifest(self) -> dict:
        try:
            doc = json.loads(self.manifest_bytes)
        except ValueError:
            raise ExportError("manifest.json is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ExportError("manifest.json is not an Airlock export manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ExportError(f"export format version {show(str(doc.get('format_version')))} is not supported "
                              f"by this airlock-sign (it reads version {FORMAT_VERSION}): update airlock-sign")
        return doc


class _AuditChecker:
    """Re-computes the hash chain of ``audit.jsonl`` while it streams by."""

    def __init__(self):
        self.pending = b""
        self.first: str | None = None
        self.last: str | None = None
        self.problem: str | None = None

    def feed(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            if line and self.problem is None:
                self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            rec = json.loads(line)
            expected_prev = self.last if self.last is not None else rec["prev_hash"]
            if rec["prev_hash"] != expected_prev:
                self.problem = f"audit record {rec['id']} does not follow the one before it (a record is missing)"
            elif audit_hash(rec["prev_hash"], rec) != rec["hash"]:
                self.problem = f"audit record {rec['id']} does not match its hash (it was changed)"
            if self.first is None:
                self.first = rec["prev_hash"]
            self.last = rec["hash"]
        except (ValueError, KeyError, TypeError):
            self.problem = "audit.jsonl holds a line that is not an audit record"


def _check_member_name(name: str) -> str:
    try:
        check_target_path(name)
    except AirlockError as exc:
        raise ExportError(f"archive member {show(name)} has an unsafe name: {exc}") from None
    return name


def read_export(path: Path, *, decrypt_key: X25519PrivateKey | None = None, extract_to: Path | None = None,
                manifest_only: bool = False) -> ExportContents:
    """One streaming pass: every member checked (regular file, safe name, no
    duplicate, caps) and hashed; with ``extract_to``, written there too."""
    path = Path(path)
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ExportError(f"cannot read {show(str(path))}: {exc.strerror}") from None
    with raw:
        if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            raise ExportError(f"{show(str(path))} is not a regular file")
        encrypted = raw.read(len(ENC_MAGIC)) == ENC_MAGIC
        raw.seek(0)
        contents = ExportContents(encrypted)
        source: io.RawIOBase | DecryptingReader = raw
        if encrypted:
            if decrypt_key is None:
                raise ExportError(f"{show(str(path))} is encrypted: give the vendor's export key with --decrypt-key")
            source = DecryptingReader(raw, decrypt_key)
        try:
            _read_members(source, contents, extract_to, manifest_only)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ExportError(f"{show(str(path))} is not a readable export archive ({exc})") from None
        except OSError as exc:
            raise ExportError(f"cannot read {show(str(path))}: {exc.strerror or exc}") from None
    return contents


def _read_members(source, contents: ExportContents, extract_to: Path | None, manifest_only: bool) -> None:
    seen: set[str] = set()
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            name = _check_member_name(member.name)
            if name in seen:
                raise ExportError(f"the archive holds {show(name)} twice")
            seen.add(name)
            if not member.isreg() or member.issparse():
                raise ExportError(f"archive member {show(name)} is not a regular file (links, folders, devices "
                                  "and FIFOs do not belong in an export)")
            if len(seen) > MAX_MEMBERS or member.size > MAX_MEMBER_BYTES:
                raise ExportError(f"the archive is larger than any export ({show(name)})")
            small = name in (MANIFEST, SIGNATURE, PUBLIC_KEY)
            cap = MAX_MANIFEST if name == MANIFEST else MAX_SMALL_FILE
            if small and member.size > cap:
                raise ExportError(f"{name} is {member.size} bytes, larger than it can be ({cap})")
            digest, kept = hashlib.sha256(), bytearray()
            checker = _AuditChecker() if name == "audit.jsonl" else None
            out = _create(extract_to, name) if extract_to is not None and not small else None
            src = archive.extractfile(member)
            if src is None:  # only regular files get here; a tar that lies about it is refused
                raise ExportError(f"{show(name)} cannot be read from the archive")
            try:
                while data := src.read(READ_CHUNK):
                    digest.update(data)
                    if small:
                        kept += data
                    if checker:
                        checker.feed(data)
                    if out is not None:
                        out.write(data)
            finally:
                if out is not None:
                    out.close()
            contents.members.append(Member(name, member.size, digest.hexdigest()))
            if name == MANIFEST:
                contents.manifest_bytes = bytes(kept)
                if manifest_only:
                    return
            elif name == SIGNATURE:
                contents.signature = bytes(kept)
            elif name == PUBLIC_KEY:
                contents.public_key = bytes(kept)
            if checker:
                checker.feed(b"\n")
                contents.audit_problem = checker.problem
                if checker.first is not None and checker.last is not None:
                    contents.audit_ends = (checker.first, checker.last)


def _create(root: Path, name: str):
    """Open ``root/name`` as a new file, creating folders, following no link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        parts = name.split("/")
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        out = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
    finally:
        os.close(fd)
    return os.fdopen(out, "wb")


# verifying --------------------------------------------------------------------------------

@dataclass
class VerifiedExport:
    manifest: dict
    manifest_sha256: str
    encrypted: bool
    files: int
    bytes: int
    continuity: str  # what --previous showed, or "not checked"
    contents: ExportContents | None = field(repr=False, default=None)

    def summary(self) -> str:
        m = self.manifest
        since = m.get("re_export_since")
        kind = f" (a re-export since export {_safe(since)})" if since is not None else ""
        return (f"OK: export {_safe(m['sequence'])}{kind} of appliance {_safe(m['appliance_id'])}, created "
                f"{_safe(m['created_at'])}; signature valid; {self.files} files ({self.bytes} bytes) match the "
                f"manifest; {self.continuity}")


def _safe(text) -> str:
    s = str(text)
    return s if s.isprintable() and s.isascii() else show(s)


def load_appliance_key(path: Path) -> tuple[str | None, Ed25519PublicKey]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SMALL_FILE + 1)
    except OSError as exc:
        raise ExportError(f"cannot read {show(str(path))}: {exc.strerror}") from None
    return read_public_key_file(data, show(str(path)))


def check_manifest(contents: ExportContents, key: Ed25519PublicKey, key_appliance: str | None) -> dict:
    """Signature, key and appliance id; returns the manifest."""
    if not contents.manifest_bytes:
        raise ExportError("the export has no manifest.json")
    if not contents.signature:
        raise ExportError("the export has no manifest.sig: it is not signed")
    manifest = contents.manifest
    ours = key_fingerprint(key)
    theirs = str(manifest.get("appliance_key_sha256"))
    appliance = _safe(manifest.get("appliance_id"))
    if key_appliance and manifest.get("appliance_id") != key_appliance:
        raise ExportError(f"the export is from appliance {appliance}, but the key given is appliance "
                          f"{_safe(key_appliance)}'s: an export from another appliance")
    if theirs != ours:
        raise ExportError(f"the export says it is signed by key sha256 {_safe(theirs[:16])}... (appliance "
                          f"{appliance}), not by the key given ({ours[:16]}...): an export from another appliance")
    try:
        key.verify(base64.b64decode(contents.signature.strip(), validate=True), contents.manifest_bytes)
    except (InvalidSignature, ValueError):
        raise ExportError("manifest.sig does not verify with the appliance key: manifest.json was changed "
                          "after signing, or the export is not from this appliance") from None
    return manifest


def check_files(contents: ExportContents, manifest: dict, key: Ed25519PublicKey) -> None:
    """Every listed file present with its size and hash; nothing added."""
    listed = {}
    for entry in manifest.get("files", []):
        listed[entry["name"]] = entry
    found = {m.name: m for m in contents.members if m.name not in (MANIFEST, SIGNATURE)}
    for name, entry in listed.items():
        m = found.get(name)
        if m is None:
            raise ExportError(f"{_safe(name)} is listed in the manifest but missing from the export (dropped)")
        if m.size != entry["size"]:
            raise ExportError(f"{_safe(name)} is {m.size} bytes, the manifest says {entry['size']}: it was changed")
        if m.sha256 != entry["sha256"]:
            raise ExportError(f"{_safe(name)} has sha256 {m.sha256[:16]}..., the manifest says "
                              f"{str(entry['sha256'])[:16]}...: its content was changed")
    extra = sorted(set(found) - set(listed))
    if extra:
        raise ExportError(f"{_safe(extra[0])} is in the export but not in the signed manifest (added)")
    if contents.public_key:
        _, included = read_public_key_file(contents.public_key, PUBLIC_KEY)
        if key_fingerprint(included) != key_fingerprint(key):
            raise ExportError("appliance.pub in the export is not the key that signed it")
    if contents.audit_problem:
        raise ExportError(f"audit.jsonl: {contents.audit_problem}")
    audit = manifest.get("audit") or {}
    if contents.audit_ends and (contents.audit_ends[0] != audit.get("from_hash")
                                or contents.audit_ends[1] != audit.get("head_hash")):
        raise ExportError("audit.jsonl does not run from the manifest's from_hash to its head_hash")


def _previous_manifest(path: Path, key: Ed25519PublicKey, decrypt_key) -> tuple[dict, str]:
    """(manifest, sha256 of its bytes) of a previous export or manifest file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST + 1)
    except OSError as exc:
        raise ExportError(f"cannot read {show(str(path))}: {exc.strerror}") from None
    if data[:1] == b"{":
        contents = ExportContents(False, manifest_bytes=data)
        manifest = contents.manifest  # a bare manifest: its signature is not at hand
    else:
        contents = read_export(path, decrypt_key=decrypt_key, manifest_only=False)
        manifest = check_manifest(contents, key, None)
    return manifest, hashlib.sha256(contents.manifest_bytes).hexdigest()


def check_continuity(manifest: dict, previous: dict, previous_sha256: str) -> str:
    if previous.get("appliance_id") != manifest.get("appliance_id"):
        raise ExportError(f"--previous is from appliance {_safe(previous.get('appliance_id'))}, this export from "
                          f"{_safe(manifest.get('appliance_id'))}")
    seq, prev = manifest["sequence"], previous["sequence"]
    if seq <= prev:
        raise ExportError(f"export {seq} is not newer than the previous export {prev}: a replayed or older export")
    if seq > prev + 1:
        missing = f"{prev + 1}" if seq == prev + 2 else f"{prev + 1} to {seq - 1}"
        raise ExportError(f"export {seq} does not follow export {prev}: export {missing} is missing")
    if manifest.get("previous_manifest_sha256") != previous_sha256:
        raise ExportError(f"export {seq} does not chain to the export {prev} given (its manifest hash differs): "
                          "one of them is not the appliance's genuine export")
    return f"follows export {prev}"


def verify_export(path: Path, appliance_key: Path, *, previous: Path | None = None,
                  decrypt_key: X25519PrivateKey | None = None, extract_to: Path | None = None) -> VerifiedExport:
    """Everything the vendor checks; raises :class:`ExportError` with the first problem."""
    key_appliance, key = load_appliance_key(appliance_key)
    contents = read_export(path, decrypt_key=decrypt_key, extract_to=extract_to)
    try:
        manifest = check_manifest(contents, key, key_appliance)
        check_files(contents, manifest, key)
        continuity = "continuity not checked (no --previous)"
        if previous is not None:
            prev_manifest, prev_sha = _previous_manifest(previous, key, decrypt_key)
            continuity = check_continuity(manifest, prev_manifest, prev_sha)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"a manifest is malformed ({type(exc).__name__}: {show(str(exc))})") from None
    listed = [m for m in contents.members if m.name not in (MANIFEST, SIGNATURE)]
    return VerifiedExport(manifest, hashlib.sha256(contents.manifest_bytes).hexdigest(), contents.encrypted,
                          len(listed), sum(m.size for m in listed), continuity, contents)


def unpack_export(path: Path, outdir: Path, appliance_key: Path, *, decrypt_key=None,
                  previous: Path | None = None) -> VerifiedExport:
    """Verify while extracting into a new folder beside ``outdir``; rename it
    to ``outdir`` only when everything checks out."""
    outdir = Path(outdir)
    if os.path.lexists(outdir):
        raise ExportError(f"{show(str(outdir))} exists already: give a new folder")
    work = outdir.with_name(f".{outdir.name}.unpacking-{os.getpid()}")
    os.mkdir(work, 0o755)
    try:
        result = verify_export(path, appliance_key, previous=previous, decrypt_key=decrypt_key, extract_to=work)
        contents = result.contents
        if contents is None:  # verify_export always keeps what it read
            raise ExportError(f"{show(str(path))}: nothing was read from the export")
        for name, data in ((MANIFEST, contents.manifest_bytes), (SIGNATURE, contents.signature),
                           (PUBLIC_KEY, contents.public_key)):
            if data:
                with _create(work, name) as f:
                    f.write(data)
        os.rename(work, outdir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def describe_export(path: Path, *, decrypt_key: X25519PrivateKey | None = None) -> str:
    """A summary for a terminal; every text from the export is escaped.  It
    does not verify: ``verify`` does."""
    contents = read_export(path, decrypt_key=decrypt_key, manifest_only=True)
    if not contents.manifest_bytes:
        raise ExportError("the export has no manifest.json")
    m = contents.manifest
    lines = [f"export {_safe(m.get('sequence'))} of appliance {_safe(m.get('appliance_id'))}"
             + (" (encrypted)" if contents.encrypted else ""),
             f"  created {_safe(m.get('created_at'))}, key sha256 {_safe(m.get('appliance_key_sha256'))}"]
    if m.get("re_export_since") is not None:
        lines.append(f"  re-export of everything since export {_safe(m['re_export_since'])}")
    if m.get("previous_sequence") is None:
        lines.append("  previous export: none (the appliance's first export)")
    else:
        lines.append(f"  previous export {_safe(m.get('previous_sequence'))}, manifest sha256 "
                     f"{_safe(m.get('previous_manifest_sha256'))}")
    for name, span in sorted((m.get("ranges") or {}).items()):
        lines.append(f"  {_safe(name)}: {_safe(json.dumps(span, sort_keys=True))}")
    lines.append("files:")
    for entry in m.get("files", []):
        records = entry.get("records")
        extra = f"  {_safe(records)} records" if records is not None else ""
        lines.append(f"  {_safe(entry.get('name'))}  {_safe(entry.get('size'))} bytes{extra}")
    lines.append("(not verified: run `airlock-sign export verify` with the appliance's key)")
    return "\n".join(lines)
