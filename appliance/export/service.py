"""``airlock export DEST``: one signed (optionally encrypted) export file.

Steps: take the export lock; settle an export that a power loss left
unrecorded (below); read the data sets since the last export in one read
transaction into a private work folder under HOME (hashed on the way); build
and sign the manifest; stream manifest, signature, public key and data files
into a tar on the media (through the encryption when asked) and flush it;
note it as pending in the database; rename it to its final name; only then
record the export (and its audit record) and drop the pending note, in one
transaction.  See docs/export.md for the format.

If the power goes after the rename but before the record, the next export
finds the pending note and the file on the stick (same length and SHA-256)
and records it, then goes on with the next number.  If the file is not on the
stick (the power went before the rename), that number is written again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Targets

from appliance.export.identity import load_key, public_identity
from appliance.export.media import MediaError, MediaFile, describe, file_digest, open_folder, remove_partials
from appliance.homelock import HomeLock
from server.clock import now_iso
from server.devices.releases import find_target
from server.exports import services as exports
from server.exports.collect import FileEntry
from server.exports.records import ExportRecord
from server.exports.services import ExportRefusedError
from server.repositories.services import is_pinned
from server.repositories.store import RepositoryStore
from server.settings import Settings
from server.timestamp_key import PUBLIC_FILE as TIMESTAMP_KEY_FILE
from server.timestamp_key import timestamp_public_key
from signing.exceptions import AirlockError
from signing.export import (
    EXPORT_KEY_TARGET,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PUBLIC_KEY,
    SIGNATURE,
    EncryptingWriter,
    key_fingerprint,
    load_export_public_key,
)

logger = logging.getLogger(__name__)

MAX_EXPORT_KEY = 64 * 1024  # bytes


class ExportBusyError(AirlockError):
    """Another export is running."""


@dataclass
class ExportResult:
    sequence: int
    path: str
    bytes: int
    files: int
    manifest_sha256: str
    encrypted_for: str | None
    re_export_since: int | None
    settled: str | None = None  # what became of an export a power loss left unrecorded

    @property
    def message(self) -> str:
        kind = f" (a re-export since export {self.re_export_since})" if self.re_export_since is not None else ""
        enc = f", encrypted for {self.encrypted_for}'s export key" if self.encrypted_for else ""
        done = (f"wrote export {self.sequence}{kind}: {self.path} ({self.bytes} bytes, {self.files} files{enc}); "
                f"manifest sha256 {self.manifest_sha256}")
        return f"{self.settled}\n{done}" if self.settled else done


class ExportLock(HomeLock):
    """The export lock, HOME/state/export.lock (:class:`HomeLock`)."""

    def __init__(self, settings: Settings):
        super().__init__(settings, "export.lock", across="export", error=ExportBusyError,
                         busy="another export is running", advice="wait for it to finish")


def export_file_name(appliance_id: str, sequence: int, encrypted: bool) -> str:
    return f"airlock-export-{appliance_id}-{sequence:06d}.tar" + (".enc" if encrypted else "")


def export_key_for(settings: Settings, repository: str):
    """The vendor's X25519 key shipped as target ``airlock/export-key.pub`` of
    ``repository``, read through the repository's trusted (TUF-verified)
    targets metadata and checked against its length and hash again."""
    if not is_pinned(repository):
        raise ExportRefusedError(f"no repository named {repository!r} is pinned: see `airlock repo list`")
    store = RepositoryStore(settings.public_dir, repository)
    if not store.exists():
        raise ExportRefusedError(f"repository {repository} has no published metadata yet: import a bundle first")
    state = store.trusted_state()
    roles = {name: Metadata[Targets].from_bytes(data).signed for name, data in state.roles.items()
             if name not in ("root", "timestamp", "snapshot")}
    target = find_target(roles, EXPORT_KEY_TARGET)
    if target is None or not target.sha256:
        raise ExportRefusedError(f"repository {repository}'s signed targets hold no {EXPORT_KEY_TARGET}: the vendor "
                                 "ships their export key in a bundle (see docs/export.md)")
    folder, _, base = EXPORT_KEY_TARGET.rpartition("/")
    path = store.target_path(f"{folder}/{target.sha256}.{base}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ExportRefusedError(f"{EXPORT_KEY_TARGET} of {repository} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_EXPORT_KEY + 1)
    if len(data) != target.length or hashlib.sha256(data).hexdigest() != target.sha256:
        raise ExportRefusedError(f"{EXPORT_KEY_TARGET} of {repository} does not match its signed length and hash")
    return load_export_public_key(data, f"{EXPORT_KEY_TARGET} of {repository}")


def run_export(settings: Settings, dest: Path, operator: str, *, since: int | None = None,
               encrypt_for: str | None = None, progress=None) -> ExportResult:
    """Write one export to the folder ``dest``; raises :class:`AirlockError`
    with one line when it cannot, leaving the media's earlier files intact."""
    from appliance.setup import appliance_id as read_appliance_id

    appliance = read_appliance_id(settings)
    if not appliance:
        raise ExportRefusedError("the appliance has no id: run `airlock init`")
    key = load_key(settings)
    recipient = export_key_for(settings, encrypt_for) if encrypt_for else None
    with ExportLock(settings):
        dir_fd = open_folder(Path(dest))
        work = settings.state_dir / f"export-work-{os.getpid()}"
        try:
            for stale in settings.state_dir.glob("export-work-*"):  # left by an export that was killed
                shutil.rmtree(stale, ignore_errors=True)
            settled = _settle_pending(dir_fd, operator)
            created = now_iso()
            try:
                os.mkdir(work, 0o700)
                collection = exports.collect(settings, work, since=since, progress=progress)
            except OSError as exc:
                raise ExportRefusedError(f"cannot prepare the export under {work} ({exc.strerror or exc}): the "
                                         "appliance's disk needs room for one export; nothing was written") from None
            sequence, since_seq, ranges, files = (collection.sequence, collection.re_export_since,
                                                  collection.ranges, collection.files)
            files = [_timestamp_key_file(settings, work), *files]  # so that it reaches the vendor
            manifest: dict[str, Any] = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "appliance_id": appliance,
                "appliance_key_sha256": key_fingerprint(key.public_key()), "sequence": sequence,
                "previous_sequence": collection.previous_sequence,
                "previous_manifest_sha256": collection.previous_manifest_sha256,
                "re_export_since": since_seq, "created_at": created, "ranges": ranges,
                "audit": {"from_hash": ranges["audit"]["from_hash"], "head_hash": ranges["audit"]["head_hash"]},
                "incident_window_seconds": settings.export_incident_window,
            }
            public = public_identity(settings, appliance).public_file
            pub_entry = FileEntry(PUBLIC_KEY, len(public), hashlib.sha256(public).hexdigest())
            manifest["files"] = [pub_entry.to_dict()] + [f.to_dict() for f in files]
            manifest_bytes = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("ascii")
            signature = base64.b64encode(key.sign(manifest_bytes)) + b"\n"
            name = export_file_name(appliance, sequence, recipient is not None)
            out = _write(dir_fd, name, work, files, manifest_bytes, signature, public, recipient, created, progress)
            record = ExportRecord(sequence=sequence, re_export_since=since_seq, created_at=created, operator=operator,
                                  file_name=name, bytes=out.written, file_sha256=out.sha256,
                                  manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                                  encrypted_for=encrypt_for, ranges=json.dumps(ranges, sort_keys=True))
            _publish(out, record)
        finally:
            os.close(dir_fd)
            shutil.rmtree(work, ignore_errors=True)
    logger.info("export %s written to %s", sequence, name)
    return ExportResult(sequence, str(Path(dest) / name), record.bytes, len(manifest["files"]),
                        record.manifest_sha256, encrypt_for, since_seq, settled)


def _publish(out: MediaFile, record: ExportRecord) -> None:
    """Note the flushed file as pending, rename it on the media, record it."""
    exports.note_pending(record)
    try:
        out.publish()
    except BaseException as exc:
        out.abort()
        exports.drop_pending()
        if isinstance(exc, OSError):
            raise MediaError(describe(exc, out.final, out.written)) from None
        raise
    exports.record_export(record)


def _settle_pending(dir_fd: int, operator: str) -> str | None:
    """An export a power loss left between its rename and its record: record
    it if it is on this media, else let its number be written again.  One
    line for the operator saying which, or None if there was none."""
    pending = exports.pending()
    if pending is None:
        return None
    name, sequence = pending.file_name, pending.sequence
    remove_partials(dir_fd, name)
    found = file_digest(dir_fd, name, pending.bytes)
    if found == (pending.bytes, pending.file_sha256):
        exports.record_export(pending, recovered=True)
        logger.warning("export %s was on the media but not recorded (power loss); recorded now", sequence)
        return f"export {sequence} ({name}) was written before a power loss but not recorded: it is on this stick " \
               "intact, and is recorded now"
    if found is not None:
        raise ExportRefusedError(f"{name} on the media is not the export {sequence} this appliance wrote before a "
                                 "power loss (its length or SHA-256 differs); move it away, then export again")
    exports.record_interrupted(operator, pending)
    logger.warning("export %s was interrupted before it was renamed on the media; writing it again", sequence)
    return (f"export {sequence} was interrupted by a power loss before it was complete on the media: it is written "
            "again now, with everything since the export before it")


class _Counter:
    """The tar stream's sink: counts bytes for the progress bar."""

    def __init__(self, write, total: int, progress):
        self._write, self.total, self.progress, self.done, self.files = write, total, progress, 0, 0

    def write(self, data) -> int:
        self._write(data)
        self.done += len(data)
        if self.progress:
            self.progress(self.done, self.total, self.files)
        return len(data)


def _write(dir_fd: int, name: str, work: Path, files, manifest: bytes, signature: bytes, public: bytes, recipient,
           created: str, progress) -> MediaFile:
    """The export streamed to the media and flushed, under its hidden name."""
    remove_partials(dir_fd, name)  # left by an earlier try at this number that the power cut short
    out = MediaFile(dir_fd, name)
    try:
        encryptor = EncryptingWriter(out.write, recipient) if recipient is not None else None
        total = _tar_size([f.size for f in files] + [len(manifest), len(signature), len(public)])
        sink = _Counter(encryptor.write if encryptor else out.write, total, progress)
        mtime = _unix(created)
        # a stream ("w|") only ever calls write; typeshed asks every mode for a whole file object
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for member, data in ((MANIFEST, manifest), (SIGNATURE, signature), (PUBLIC_KEY, public)):
                tar.addfile(_info(member, len(data), mtime), io.BytesIO(data))
            for f in files:
                with open(work / f.name, "rb") as src:
                    tar.addfile(_info(f.name, f.size, mtime), src)
                sink.files += 1
        if encryptor:
            encryptor.close()
        out.flush()
    except OSError as exc:
        out.abort()
        raise MediaError(describe(exc, name, out.written)) from None
    except BaseException:
        out.abort()
        raise
    return out


def _tar_size(sizes: list[int]) -> int:
    """Bytes of the tar stream (for the progress bar): a 512-byte header and
    the data padded to 512 per member, two empty blocks, whole records."""
    blocks = sum(1 + (size + 511) // 512 for size in sizes) + 2
    return -(-blocks * 512 // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _unix(iso_time: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso_time).timestamp())


def _timestamp_key_file(settings: Settings, work: Path) -> FileEntry:
    """``timestamp-key.json``: the public half of the appliance's timestamp
    key, in the TUF key form ``airlock-sign authorize-appliance`` takes."""
    data = timestamp_public_key(settings).file_bytes()
    (work / TIMESTAMP_KEY_FILE).write_bytes(data)
    return FileEntry(TIMESTAMP_KEY_FILE, len(data), hashlib.sha256(data).hexdigest())
