"""``airlock backup DEST`` and ``airlock restore SRC``.

A backup is one file, ``DEST/airlock-backup-<appliance-id>-<UTC time>.tar.enc``:
a tar, encrypted with a passphrase (``crypto.py``), holding
``airlock-backup.json`` (what it is) and, by their names in the home, the
database (an online snapshot, ``server/backup.py``), ``appliance-id``,
``appliance-key.pem``, ``airlock.toml``, ``state/form-secret``, ``public/``
(the published trees: trust state as devices see it), ``reports/blobs/``
and ``archive/``.  It is made holding the import lock, so the published
trees and the database agree; check-ins and reports go on meanwhile.  It
is written to a temporary name, flushed and renamed (``signing.durable``),
and never replaces a file.

A restore decrypts and unpacks the whole backup into a private folder in
the home first; only when every chunk has authenticated, every name is
safe and the database passes SQLite's integrity check does it put the
pieces in place.  A flipped byte, a wrong passphrase or a cut-off file
therefore changes nothing.  It refuses while ``airlock serve`` answers on
the home's configured bind (its workers would go on writing to the old
database).  It refuses a home that holds data (devices,
imports ...) unless forced; then what it replaces is kept in
``HOME/replaced-<UTC time>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path

from appliance.backup.crypto import MIN_PASSPHRASE, BackupCryptoError, DecryptingReader, EncryptingWriter
from appliance.export.service import ExportLock
from appliance.importer import ImportLock
from appliance.setup import appliance_id as read_appliance_id
from appliance.status import probe_serve
from server import backup as db_backup
from server.clock import utcnow
from server.settings import Settings
from signing.durable import PendingFile, fsync_dir
from signing.exceptions import AirlockError
from signing.paths import show

FORMAT, FORMAT_VERSION = "airlock-backup", 1
MANIFEST = "airlock-backup.json"
DATABASE = "airlock.db"
# what a backup holds, by its path in the home; folders are taken whole
FILES = ("appliance-id", "appliance-key.pem", "timestamp-key.pem", "timestamp-key.json", "airlock.toml",
         "state/form-secret")
FOLDERS = ("public", "reports/blobs", "archive")
REQUIRED = (MANIFEST, DATABASE, "appliance-id", "appliance-key.pem")
MAX_MEMBERS = 10_000_000
MAX_NAME = 4096  # characters
COPY = 1 << 20  # bytes


class BackupError(AirlockError):
    """A backup cannot be written, or a restore is refused."""


@dataclass
class BackupResult:
    path: str
    bytes: int
    sha256: str
    files: int
    appliance_id: str
    removed: list[str] = field(default_factory=list)  # older backups removed by --keep

    @property
    def message(self) -> str:
        pruned = f"; removed {len(self.removed)} older: {', '.join(self.removed)}" if self.removed else ""
        return (f"wrote backup {self.path} ({self.bytes} bytes, {self.files} files, appliance {self.appliance_id}); "
                f"sha256 {self.sha256}; keep the passphrase apart from it: without it the backup cannot be "
                f"restored{pruned}")


@dataclass
class RestoreResult:
    appliance_id: str
    made_at: str
    files: int
    replaced_to: str | None
    migrations_applied: list[str]

    @property
    def message(self) -> str:
        kept = f"; what it replaced is in {self.replaced_to}" if self.replaced_to else ""
        upgraded = f"; upgraded the database ({', '.join(self.migrations_applied)})" if self.migrations_applied else ""
        return (f"restored appliance {self.appliance_id} from its backup of {self.made_at} ({self.files} files)"
                f"{upgraded}{kept}; start it with `systemctl start airlock` (or `airlock serve`)")


def _sqlite_only(settings: Settings, command: str) -> None:
    if settings.database_url:
        raise BackupError(f"`airlock {command}` covers a home with its SQLite database; this appliance's database is "
                          "PostgreSQL (database_url): use pg_dump/pg_restore for it and back up the shared "
                          "published tree with the storage's own tools (docs/scale-out.md)")


def check_passphrase(passphrase: bytes) -> bytes:
    if len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE:
        raise BackupError(f"the backup passphrase must have at least {MIN_PASSPHRASE} characters; "
                          "give a longer one in --passphrase-file")
    return passphrase


# backup -----------------------------------------------------------------------------

def backup(settings: Settings, dest: Path, passphrase: bytes, operator: str, *, keep: int | None = None
           ) -> BackupResult:
    """Write one encrypted backup of the home into the folder ``dest``;
    with ``keep``, then remove this appliance's oldest backups there beyond
    the ``keep`` newest (for a scheduled backup)."""
    _sqlite_only(settings, "backup")
    check_passphrase(passphrase)
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1 (the backup just written)")
    home = settings.home
    if not dest.is_dir():
        raise BackupError(f"{show(str(dest))} is not a folder: give the folder (say the mounted USB stick) to write "
                          "the backup into")
    if dest.resolve() == home.resolve() or dest.resolve().is_relative_to(home.resolve()):
        raise BackupError(f"{show(str(dest))} is inside the appliance's home {home}: a backup must live elsewhere "
                          "(a USB stick, another disk)")
    appliance = read_appliance_id(settings)
    if not appliance:
        raise BackupError(f"{home} has no appliance id: run `airlock init` first")
    made = utcnow()
    name = f"airlock-backup-{appliance}-{made:%Y%m%dT%H%M%SZ}.tar.enc"
    if os.path.lexists(dest / name):
        raise BackupError(f"{dest / name} already exists and is never overwritten: wait a second and back up again")
    with ImportLock(settings, "back up again"):
        work = Path(tempfile.mkdtemp(dir=settings.state_dir, prefix="backup-work-"))
        try:
            schema = db_backup.snapshot_database(settings.database_path, work / DATABASE)
            manifest = {"format": FORMAT, "version": FORMAT_VERSION, "appliance_id": appliance,
                        "made_at": made.strftime("%Y-%m-%dT%H:%M:%SZ"), "schema": schema,
                        "airlock_version": package_version("airlock")}
            digest = hashlib.sha256()
            size = 0

            with PendingFile(dest, prefix=".airlock-backup-") as pending:
                def sink(data: bytes) -> None:
                    nonlocal size
                    digest.update(data)
                    size += len(data)
                    pending.file.write(data)

                writer = EncryptingWriter(sink, passphrase)
                with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
                    _add_path(tar, work / DATABASE, DATABASE)
                    files = 1 + _add_home(tar, home)
                writer.close()
                try:
                    path = pending.commit(dest / name, mode=0o600, overwrite=False)
                except FileExistsError:
                    raise BackupError(f"{dest / name} appeared meanwhile and is never overwritten: back up "
                                      "again") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    db_backup.record_backup(operator, name, size, digest.hexdigest(), schema)
    removed = _prune(dest, appliance, keep) if keep is not None else []
    return BackupResult(str(path), size, digest.hexdigest(), files, appliance, removed)


def _prune(dest: Path, appliance: str, keep: int) -> list[str]:
    """Remove this appliance's backups in ``dest`` but the ``keep`` newest
    (by the UTC time in their names): regular files named exactly as
    :func:`backup` names them, nothing else."""
    pattern = re.compile(rf"airlock-backup-{re.escape(appliance)}-\d{{8}}T\d{{6}}Z\.tar\.enc")
    ours = sorted(e.name for e in os.scandir(dest) if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False))
    removed = ours[:-keep]
    for name in removed:
        (dest / name).unlink()
    if removed:
        fsync_dir(dest)
    return removed


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_path(tar: tarfile.TarFile, path: Path, name: str) -> bool:
    """Add one file, folder entry or link; False when it vanished or is of
    another kind (a socket, say)."""
    try:
        info = tar.gettarinfo(str(path), name)  # lstat: links are stored as links
    except FileNotFoundError:
        return False
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        try:
            with open(path, "rb") as f:
                tar.addfile(info, f)
        except FileNotFoundError:
            return False
    elif info.isdir() or info.issym() or info.islnk():  # hard links (root.json, N.root.json) stay links
        tar.addfile(info)
    else:
        return False
    return True


def _add_home(tar: tarfile.TarFile, home: Path) -> int:
    count = 0
    for rel in FILES:
        if os.path.lexists(home / rel):
            count += _add_path(tar, home / rel, rel)
    for rel in FOLDERS:
        top = home / rel
        if not top.is_dir():
            continue
        for folder, dirnames, filenames in os.walk(top):
            base = Path(folder)
            arc = base.relative_to(home).as_posix()
            count += _add_path(tar, base, arc)
            dirnames.sort()
            for entry in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
                count += _add_path(tar, base / entry, f"{arc}/{entry}")
    return count


# restore ----------------------------------------------------------------------------

def restore(settings: Settings, source: Path, passphrase: bytes, operator: str, *,
            force: bool = False) -> RestoreResult:
    """Bring the appliance in ``settings.home`` back from ``source``."""
    _sqlite_only(settings, "restore")
    home = settings.home
    if not source.is_file():
        raise BackupError(f"{show(str(source))} is not a file: give the backup file (airlock-backup-....tar.enc)")
    serving = probe_serve(settings)
    if serving.answers:
        raise BackupError(f"airlock serve answers on {serving.url}: stop it first (`systemctl stop airlock`), then "
                          "restore, then start it again")
    found = db_backup.data_in(settings.database_path)
    if not force and found:
        what = ", ".join(f"{n} {kind}" for kind, n in found.items())
        raise BackupError(f"{home} holds an appliance with data ({what}): restore onto a fresh home (`airlock init` "
                          "on a new folder), or give --force to replace it (what it holds is kept in "
                          "HOME/replaced-<time>/)")
    made_home = not home.exists()  # removed again when the restore is refused
    if made_home:
        home.mkdir(parents=True)
        os.chmod(home, 0o750)
    made_state = not settings.state_dir.exists()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    swapped = False
    try:
        with ImportLock(settings, "restore again"), ExportLock(settings):
            staging = Path(tempfile.mkdtemp(dir=home, prefix=".restore-"))
            try:
                manifest, files = _unpack(source, passphrase, staging)
                db_backup.check_copy(staging / DATABASE)
                upgraded = db_backup.upgrade_copy(staging / DATABASE)
                swapped = True
                replaced = _swap_in(settings, staging, keep=bool(found))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        if not swapped and made_home:
            shutil.rmtree(home, ignore_errors=True)
        elif not swapped and made_state:
            shutil.rmtree(settings.state_dir, ignore_errors=True)
    settings.staging_dir.mkdir(exist_ok=True)
    from server import bind_database
    from server.db import migrate

    db = bind_database(settings)
    applied = upgraded + migrate(db)
    kept = str(replaced) if replaced else None
    db_backup.record_restore(operator, source.name, str(manifest.get("made_at", "")), kept)
    db.close()
    return RestoreResult(str(manifest.get("appliance_id", "")), str(manifest.get("made_at", "")), files, kept,
                         applied)


def _unpack(source: Path, passphrase: bytes, staging: Path) -> tuple[dict, int]:
    """Decrypt and unpack ``source`` into ``staging``, checking every chunk
    and name; (manifest, files)."""
    where = show(str(source))
    manifest: dict | None = None
    count = 0
    with open(source, "rb") as raw:
        reader = DecryptingReader(raw, passphrase, where)
        try:
            room = shutil.disk_usage(staging).free - ROOM_KEPT_FREE
            with tarfile.open(fileobj=reader, mode="r|", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]
                for member in tar:
                    room -= member.size
                    if room < 0:
                        raise BackupError(f"{where} unpacks to more than the free space under the home (keeping "
                                          f"{ROOM_KEPT_FREE} bytes free): free space, or restore onto a larger disk")
                    count += 1
                    if count > MAX_MEMBERS:
                        raise BackupError(f"{where} holds more than {MAX_MEMBERS} entries: not an appliance's "
                                          "backup")
                    name = _safe_name(member.name, where)
                    if manifest is None:
                        if name != MANIFEST or not member.isfile() or member.size > 64 * 1024:
                            raise BackupError(f"{where} does not start with {MANIFEST}: not an Airlock backup")
                        stream = tar.extractfile(member)
                        assert stream is not None, "a regular member has content"
                        manifest = _read_manifest(stream.read(), where)
                        continue
                    _unpack_member(tar, member, name, staging, where)
        except tarfile.TarError as exc:
            raise BackupError(f"{where} is not a readable backup ({exc}): use another copy") from None
        if reader.drain() and not reader.done:
            raise BackupCryptoError(f"{where} is damaged: use another copy")
        if not reader.done:
            raise BackupCryptoError(f"{where} is cut short: use another copy")
    if manifest is None:
        raise BackupError(f"{where} is empty: not an Airlock backup")
    missing = [n for n in REQUIRED if n != MANIFEST and not os.path.lexists(staging / n)]
    if missing:
        raise BackupError(f"{where} lacks {', '.join(missing)}: not a whole backup; use another one")
    return manifest, count - 1


def _read_manifest(data: bytes, where: str) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BackupError(f"{where}: its {MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{where} is not an Airlock backup")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(f"{where} is in backup format {show(str(manifest.get('version')))}, this Airlock reads "
                          f"{FORMAT_VERSION}: restore it with the Airlock that made it")
    return manifest


def _safe_name(name: str, where: str) -> str:
    parts = name.split("/")
    ok = (0 < len(name) <= MAX_NAME and not name.startswith("/") and "\x00" not in name
          and all(p not in ("", ".", "..") for p in parts)
          and (name in (MANIFEST, DATABASE) or name in FILES or any(name == f or name.startswith(f + "/")
                                                                     for f in FOLDERS)))
    if not ok:
        raise BackupError(f"{where} holds an entry {show(name)} that no backup holds: refused, nothing restored")
    return name


# The only symbolic link a home holds: a repository's `metadata` -> `_generations/NNNNNN`
# (server/repositories/store.py).  A link that can only point one folder down cannot
# lead out of the tree, however links are chained.
_METADATA_LINK = re.compile(r"_generations/[0-9]{6}")
ROOM_KEPT_FREE = 256 * 1024 * 1024  # bytes left free on the home's disk after unpacking
MAX_HEADER = 1 << 20  # bytes: a pax or GNU long-name header no appliance's backup comes near


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuse an extended header before tarfile reads it whole into memory."""

    def _proc_pax(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes")
        return super()._proc_pax(tf)  # type: ignore[misc]

    def _proc_gnulong(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_HEADER:
            raise tarfile.HeaderError(f"a long-name header of {self.size} bytes")
        return super()._proc_gnulong(tf)  # type: ignore[misc]


def _inside(path: Path, staging: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(staging)
    return real == top or real.startswith(top + os.sep)


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, staging: Path, where: str) -> None:
    target = staging / name
    if not _inside(target.parent, staging) or (os.path.lexists(target) and not _inside(target, staging)):
        raise BackupError(f"{where}: {show(name)} would be written outside the restore folder: refused")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    if member.isdir():
        target.mkdir(mode=0o750, exist_ok=True)
        os.chmod(target, stat.S_IMODE(member.mode) & 0o750 | 0o700)
    elif member.issym():
        link = member.linkname
        if name.rsplit("/", 1)[-1] != "metadata" or not _METADATA_LINK.fullmatch(link):
            raise BackupError(f"{where}: link {show(name)} -> {show(link)} is not a repository's metadata link "
                              "(the only link a home holds): refused")
        os.symlink(link, target)
    elif member.islnk():
        other = _safe_name(member.linkname, where)
        if other.split("/")[0] != name.split("/")[0] or not (staging / other).is_file() \
                or (staging / other).is_symlink():
            raise BackupError(f"{where}: hard link {show(name)} names {show(other)}, no file before it: refused")
        os.link(staging / other, target)
    elif member.isfile() and member.issparse():
        raise BackupError(f"{where}: {show(name)} is a sparse file, which no backup holds: refused")
    elif member.isfile():
        stream = tar.extractfile(member)
        assert stream is not None, "a regular member has content"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while data := stream.read(COPY):
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), stat.S_IMODE(member.mode) & 0o750)
    else:
        raise BackupError(f"{where}: {show(name)} is neither a file, a folder nor a link: refused")


def _swap_in(settings: Settings, staging: Path, *, keep: bool) -> Path | None:
    """Move what the home holds of the backed-up set aside, then the
    unpacked backup in; the old pieces are kept when ``keep``, else removed
    (a freshly initialised home's new key and empty database)."""
    home = settings.home
    aside = Path(tempfile.mkdtemp(dir=home, prefix=f"replaced-{utcnow():%Y%m%dT%H%M%SZ}-"))
    for old in db_backup.database_files(settings.database_path):
        os.replace(old, aside / old.name)
    for rel in (*FILES, *FOLDERS):
        if os.path.lexists(home / rel):
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(home / rel, aside / rel)
    for rel in (*FILES, *FOLDERS):
        if os.path.lexists(staging / rel):
            (home / rel).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            os.replace(staging / rel, home / rel)
            fsync_dir((home / rel).parent)
    db_backup.install_database(staging / DATABASE, settings.database_path)
    settings.public_dir.joinpath("repos").mkdir(parents=True, exist_ok=True)
    if keep:
        return aside
    shutil.rmtree(aside)
    return None
