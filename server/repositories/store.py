"""The published repository tree: a plain file tree any static server can serve.

Layout under ``<home>/public/repos/<name>/``::

    metadata -> _generations/000007      (a relative symbolic link)
    _generations/000007/                 N.root.json, root.json, timestamp.json,
                                         N.snapshot.json, N.targets.json, N.<role>.json
    _generations/000007.json             manifest: current and retired files
    targets/<dir>/<hash>.<basename>      content-addressed, shared by generations

Publication builds a complete new generation beside the current one (old
files hard-linked, new files written and fsynced), then swaps the
``metadata`` link with one ``rename``: a device sees the old repository or
the new one, never a mix.  Superseded versioned files are carried into new
generations until the grace period has passed, so a device that read the old
``timestamp.json`` can still fetch the snapshot it names.  Root versions are
never retired.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import logging
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from server.clock import utcnow
from signing.durable import PendingFile, fsync_dir, fsync_file
from signing.exceptions import AirlockError
from signing.paths import check_target_path
from signing.verify import TrustedState, VerifiedRepository, root_versions, trusted_state_from

logger = logging.getLogger(__name__)

_GENERATION = re.compile(r"^\d{6}$")
# versioned: "<N>.<role name quoted as clients request it>.json" (signing.paths.role_filename), whose
# characters are letters, digits, "_.-~" and "%"; unversioned: root.json and timestamp.json
_VERSIONED_NAME = re.compile(r"^[1-9][0-9]{0,18}\.[A-Za-z0-9._~%-]{1,216}\.json$")
_UNVERSIONED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.json$")


class StoreError(AirlockError):
    """The published tree cannot be read or written."""

    status = 500  # the appliance's own files, not the request, are at fault
    code = "repository_error"


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to the new file ``path`` and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def is_metadata_name(filename: str) -> bool:
    """A name that may be a file of the published metadata folder: one path
    component, never hidden, never ``.`` or ``..``."""
    if _VERSIONED_NAME.fullmatch(filename):
        return True  # starts with a digit, holds no "/": a plain file name whatever dots follow
    return bool(_UNVERSIONED_NAME.fullmatch(filename)) and ".." not in filename


class RepositoryStore:
    """One repository's published tree."""

    def __init__(self, public_dir: Path, name: str):
        self.name = name
        self.root = public_dir / "repos" / name
        self.metadata_dir = self.root / "metadata"
        self.targets_dir = self.root / "targets"
        self.generations_dir = self.root / "_generations"

    # reading ---------------------------------------------------------------
    def exists(self) -> bool:
        return self.metadata_dir.is_symlink()

    def current_generation(self) -> int:
        return int(os.readlink(self.metadata_dir).rsplit("/", 1)[-1])

    def manifest(self) -> dict:
        path = self.generations_dir / f"{self.current_generation():06d}.json"
        return json.loads(path.read_text())

    def read_metadata(self, filename: str, cap: int) -> bytes | None:
        if not is_metadata_name(filename):
            return None
        try:
            fd = os.open(self.metadata_dir / filename, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(cap + 1)
        if len(data) > cap:
            raise StoreError(f"published {filename} is larger than {cap} bytes")
        return data

    def metadata_names(self) -> list[str]:
        return sorted(os.listdir(self.metadata_dir))

    def has_target(self, relpath: str) -> bool:
        check_target_path(relpath)
        return (self.targets_dir / relpath).is_file()

    def target_path(self, relpath: str) -> Path:
        return self.targets_dir / check_target_path(relpath)

    def vendor_timestamp(self) -> bytes | None:
        """The vendor's newest verified ``timestamp.json`` when the one served
        is the appliance's own (re-signed with its timestamp key); None when
        the served one is the vendor's."""
        encoded = self.manifest().get("vendor_timestamp")
        return base64.b64decode(encoded) if encoded else None

    def root_versions(self) -> list[int]:
        return root_versions(self.metadata_names())

    def trusted_state(self) -> TrustedState:
        return trusted_state_from(self.read_metadata, self.root_versions()[-1])

    # writing ---------------------------------------------------------------
    def create(self, root_bytes: bytes, root_version: int) -> None:
        """Start the tree with the pinned root as its only file."""
        if self.root.exists():
            raise StoreError(f"{self.root} already exists: the repository is already published")
        self.generations_dir.mkdir(parents=True)
        self.targets_dir.mkdir()
        gen = self.generations_dir / "000001"
        gen.mkdir()
        write_file(gen / f"{root_version}.root.json", root_bytes)
        os.link(gen / f"{root_version}.root.json", gen / "root.json")
        fsync_dir(gen)
        self._write_manifest(1, {"current": [f"{root_version}.root.json", "root.json"], "retired": {},
                                 "targets": [], "targets_retired": {}})
        self._swap(1)

    def publish(self, verified: VerifiedRepository, *, grace_period: int, now: datetime | None = None,
                publication: dict | None = None, vendor_timestamp: bytes | None = None) -> int:
        """Publish a verified repository; returns the new generation number.

        Targets go in first (new names only), then a complete new metadata
        generation, then the one ``rename`` that makes it current.  When the
        ``timestamp.json`` published is the appliance's own,
        ``vendor_timestamp`` is the vendor's it was made from (kept in the
        manifest, never served: :meth:`vendor_timestamp`); a timestamp kept
        as it was keeps its vendor's.
        """
        now = now or utcnow()
        old_gen = self.current_generation()
        old = self.manifest()
        self._publish_targets(verified)

        new_current = set(verified.current.values()) | {"root.json"}
        all_names = set(self.metadata_names())
        roots = {n for n in all_names | set(verified.metadata) if n.endswith(".root.json") and n[0].isdigit()}
        new_current |= roots
        retired = dict(old.get("retired", {}))
        for name in old.get("current", []):
            if name not in new_current and name not in ("timestamp.json", "root.json"):
                retired.setdefault(name, now.isoformat(timespec="seconds"))
        cutoff = now - timedelta(seconds=grace_period)
        retired = {n: t for n, t in retired.items()
                   if n not in new_current and datetime.fromisoformat(t) > cutoff}

        # the files of targets behind a role that is unavailable for now (expired, say) stay while held
        held = {f for t in verified.skipped for f in t.filenames if (self.targets_dir / f).is_file()}
        targets_now = sorted({f for t in verified.targets for f in t.filenames} | held)
        targets_retired = dict(old.get("targets_retired", {}))
        for rel in old.get("targets", []):
            if rel not in targets_now:
                targets_retired.setdefault(rel, now.isoformat(timespec="seconds"))
        expired_targets = [rel for rel, t in targets_retired.items()
                           if rel not in targets_now and datetime.fromisoformat(t) <= cutoff]
        targets_retired = {rel: t for rel, t in targets_retired.items()
                           if rel not in targets_now and rel not in expired_targets}

        gen = old_gen + 1
        tmp = self.generations_dir / f".tmp-{gen:06d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        keep = new_current | set(retired)
        for name in sorted(keep):
            if name in ("timestamp.json", "root.json"):
                continue
            if name in verified.metadata:
                write_file(tmp / name, verified.metadata[name])
            elif name in all_names:
                os.link(self.metadata_dir / name, tmp / name)
            else:
                raise StoreError(f"{name} is neither in the bundle nor published")
        if "timestamp.json" in verified.metadata:
            write_file(tmp / "timestamp.json", verified.metadata["timestamp.json"])
        elif "timestamp.json" in all_names:
            os.link(self.metadata_dir / "timestamp.json", tmp / "timestamp.json")
        os.link(tmp / verified.current["root"], tmp / "root.json")
        fsync_dir(tmp)
        os.rename(tmp, self.generations_dir / f"{gen:06d}")
        manifest = {"current": sorted(new_current | {"timestamp.json"}), "retired": retired,
                    "targets": targets_now, "targets_retired": targets_retired, "publication": publication or {}}
        if vendor_timestamp is not None:
            manifest["vendor_timestamp"] = base64.b64encode(vendor_timestamp).decode()
        elif "timestamp.json" not in verified.metadata and old.get("vendor_timestamp"):
            manifest["vendor_timestamp"] = old["vendor_timestamp"]
        self._write_manifest(gen, manifest)
        self._swap(gen)
        self._remove_old_generations(keep_from=gen - 1)
        for rel in expired_targets:
            with contextlib.suppress(FileNotFoundError):
                (self.targets_dir / rel).unlink()
        return gen

    def replace_timestamp(self, data: bytes, vendor_timestamp: bytes) -> int:
        """Serve ``data`` (a timestamp the appliance signed from
        ``vendor_timestamp``) as ``timestamp.json``: a new generation holding
        every other file of the current one, made current with the same one
        ``rename`` as :meth:`publish`.  Call it only under the import lock."""
        old_gen = self.current_generation()
        old = self.manifest()
        gen = old_gen + 1
        tmp = self.generations_dir / f".tmp-{gen:06d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name in self.metadata_names():
            if name != "timestamp.json":
                os.link(self.metadata_dir / name, tmp / name)
        write_file(tmp / "timestamp.json", data)
        fsync_dir(tmp)
        os.rename(tmp, self.generations_dir / f"{gen:06d}")
        manifest = {**old, "publication": {}, "vendor_timestamp": base64.b64encode(vendor_timestamp).decode()}
        self._write_manifest(gen, manifest)
        self._swap(gen)
        self._remove_old_generations(keep_from=gen - 1)
        return gen

    def _publish_targets(self, verified: VerifiedRepository) -> None:
        touched: set[Path] = set()

        def make_parents(folder: Path) -> None:
            missing = []
            while not folder.exists():
                missing.append(folder)
                folder = folder.parent
            for f in reversed(missing):
                f.mkdir()
                touched.add(f.parent)  # the new entry lives in the parent
        for entry in verified.targets:
            if entry.source is None:
                continue
            fsync_file(entry.source)
            for rel in entry.filenames:
                dest = self.target_path(rel)
                if dest.exists():
                    continue
                make_parents(dest.parent)
                tmp = dest.with_name(f".tmp-{dest.name}")
                if tmp.exists():
                    tmp.unlink()
                try:
                    os.link(entry.source, tmp)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    shutil.copyfile(entry.source, tmp)
                    fsync_file(tmp)
                os.rename(tmp, dest)
                touched.add(dest.parent)
        for folder in touched:
            fsync_dir(folder)

    def clean_up_after_crash(self) -> list[str]:
        """Remove what an interrupted publication leaves: temporary files and
        folders, and a generation built but never made current.  Call it only
        while holding the import lock."""
        removed: list[str] = []
        if not self.exists():
            return removed
        current = self.current_generation()
        for entry in os.listdir(self.generations_dir):
            path = self.generations_dir / entry
            stem = entry.removesuffix(".json")
            stale = entry.startswith(".tmp-") or (_GENERATION.match(stem) and int(stem) > current)
            if stale:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(str(path))
        link = self.root / ".metadata.new"
        if link.is_symlink():
            link.unlink()
            removed.append(str(link))
        # target files that no generation references: copied in by a
        # publication that never went live
        manifest = self.manifest()
        known = set(manifest.get("targets", [])) | set(manifest.get("targets_retired", {}))
        for dirpath, _dirs, files in os.walk(self.targets_dir):
            for name in files:
                target = os.path.join(dirpath, name)
                if name.startswith(".tmp-") or os.path.relpath(target, self.targets_dir) not in known:
                    os.unlink(target)
                    removed.append(target)
        if removed:
            fsync_dir(self.generations_dir)
        return removed

    def _write_manifest(self, gen: int, manifest: dict) -> None:
        # ".tmp-" names are what clean_up_after_crash removes
        with PendingFile(self.generations_dir, prefix=".tmp-") as pending:
            pending.file.write(json.dumps(manifest, indent=1, sort_keys=True).encode())
            pending.commit(self.generations_dir / f"{gen:06d}.json")

    def _swap(self, gen: int) -> None:
        link = self.root / ".metadata.new"
        if link.is_symlink():
            link.unlink()
        os.symlink(f"_generations/{gen:06d}", link)
        os.rename(link, self.metadata_dir)
        fsync_dir(self.root)
        logger.info("repository %s now serves metadata generation %d", self.name, gen)

    def _remove_old_generations(self, keep_from: int) -> None:
        for entry in os.listdir(self.generations_dir):
            stem = entry.removesuffix(".json")
            if _GENERATION.match(stem) and int(stem) < keep_from:
                path = self.generations_dir / entry
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
