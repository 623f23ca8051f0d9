"""Read a bundle from untrusted media into a private staging folder.

A bundle is a directory, or a ``.tar``/``.tar.gz`` of one, holding
``<repo>/metadata/`` and ``<repo>/targets/`` per repository (on USB media it
is the folder ``airlock/`` at the media's root).  Everything is copied into
the appliance's own staging folder first, hashed while it is copied, and from
then on only that copy is read: a stick that changes under us, or a crafted
archive, cannot make verification and publication see different bytes.

Every entry is checked before a byte of it is written: regular files and
directories only (no links, devices or FIFOs), names that stay inside the
bundle, caps on count, size and name length.  Directories on media are
walked with ``O_NOFOLLOW`` and ``lstat``; archives are parsed member by member
and never extracted by :mod:`tarfile` itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from signing.exceptions import UnsafeBundleError, UnsafeNameError
from signing.paths import check_target_path, show

BUNDLE_FOLDER = "airlock"
CHUNK = 1024 * 1024  # bytes read and hashed at a time

# progress(bytes_done, bytes_total or None, files_done)
Progress = Callable[[int, "int | None", int], None]


@dataclass(frozen=True)
class BundleLimits:
    """Caps that keep a hostile bundle from exhausting the appliance."""

    max_files: int = 200_000  # entries, files and folders
    max_total_bytes: int = 1 << 40  # bytes of file content, all files
    max_file_bytes: int = 1 << 38  # bytes, one file
    max_depth: int = 32  # folder levels
    max_seconds: float = 6 * 3600.0  # wall time to read the whole bundle


@dataclass(frozen=True)
class StagedFile:
    """One file of the bundle, as copied into staging."""

    relpath: str  # inside the bundle root, '/'-separated
    path: Path  # the appliance's own copy
    size: int  # bytes
    sha256: str


@dataclass
class StagedBundle:
    """A bundle copied into staging: its files and a digest of the whole."""

    root: Path
    files: dict[str, StagedFile] = field(default_factory=dict)
    source: str = ""

    @property
    def repositories(self) -> list[str]:
        return sorted({rel.split("/", 1)[0] for rel in self.files})

    @property
    def digest(self) -> str:
        """SHA-256 over the sorted list of (path, size, sha256): the same for
        a directory and for a tar of the same files."""
        manifest = [[f.relpath, f.size, f.sha256] for f in sorted(self.files.values(), key=lambda f: f.relpath)]
        return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    def get(self, repo: str, kind: str, relpath: str) -> StagedFile | None:
        return self.files.get(f"{repo}/{kind}/{relpath}")


class _Budget:
    """Counts what has been read and refuses past the limits."""

    def __init__(self, limits: BundleLimits, progress: Progress | None, total: int | None):
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.progress = progress
        self.total = total
        self.deadline = time.monotonic() + limits.max_seconds

    def entry(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise UnsafeBundleError(
                f"bundle has more than {self.limits.max_files} entries; refused "
                "(a bundle needs one file per metadata version and target)"
            )
        if name.count("/") >= self.limits.max_depth:
            raise UnsafeBundleError(f"{show(name)} is nested deeper than {self.limits.max_depth} folders")
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise UnsafeBundleError(
                f"reading the bundle took longer than {self.limits.max_seconds:.0f} s; refused"
            )

    def add_bytes(self, name: str, n: int, file_size: int) -> None:
        self.bytes += n
        if file_size > self.limits.max_file_bytes:
            raise UnsafeBundleError(f"{show(name)} is larger than {self.limits.max_file_bytes} bytes; refused")
        if self.bytes > self.limits.max_total_bytes:
            raise UnsafeBundleError(f"bundle is larger than {self.limits.max_total_bytes} bytes; refused")

    def report(self, done: int | None = None) -> None:
        if self.progress:
            self.progress(self.bytes if done is None else done, self.total, self.files)


def _check_name(name: str) -> str:
    try:
        return check_target_path(name)
    except UnsafeNameError as exc:
        raise UnsafeBundleError(f"bundle entry {show(name)} has an unsafe name: {exc}") from None


def _copy_stream(src, dest: Path, name: str, budget: _Budget, declared: int | None) -> StagedFile:
    """Copy ``src`` (a binary reader) into ``dest`` while hashing it."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        while True:
            n = src.readinto(view)
            if not n:
                break
            digest.update(view[:n])
            mv = view[:n]
            while mv:
                written = os.write(fd, mv)
                mv = mv[written:]
            size += n
            budget.add_bytes(name, n, size)
            if declared is not None and size > declared:
                raise UnsafeBundleError(f"{show(name)} grew while it was read; refused")
            if size % (64 * CHUNK) < CHUNK:
                budget.check_time()
                budget.report()
    finally:
        os.close(fd)
    return StagedFile(relpath=name, path=dest, size=size, sha256=digest.hexdigest())


def _prepare_dest(root: Path, name: str) -> Path:
    dest = root.joinpath(*name.split("/"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def _stage_directory(source: Path, root: Path, budget: _Budget, bundle: StagedBundle) -> None:
    """Walk a folder on media without ever following a link."""

    def walk(dir_fd: int, prefix: str) -> None:
        with os.scandir(dir_fd) as entries:
            names = sorted(e.name for e in entries)
        for raw in names:
            try:
                leaf = raw if isinstance(raw, str) else os.fsdecode(raw)
                leaf.encode("utf-8")
            except UnicodeError:
                raise UnsafeBundleError(f"bundle entry {show(prefix + raw)} is not valid UTF-8") from None
            name = _check_name(prefix + leaf)
            budget.entry(name)
            st = os.lstat(leaf, dir_fd=dir_fd)
            if stat.S_ISDIR(st.st_mode):
                fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    walk(fd, name + "/")
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                        raise UnsafeBundleError(f"{show(name)} changed while it was read; refused")
                    budget.add_bytes(name, 0, fst.st_size)
                    with os.fdopen(fd, "rb", buffering=0, closefd=False) as src:
                        staged = _copy_stream(src, _prepare_dest(root, name), name, budget, fst.st_size)
                finally:
                    os.close(fd)
                bundle.files[name] = staged
            else:
                kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file"
                raise UnsafeBundleError(
                    f"bundle entry {show(name)} is a {kind}; bundles hold only regular files and folders"
                )

    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        walk(fd, "")
    finally:
        os.close(fd)


def _stage_tar(source: Path, root: Path, budget: _Budget, bundle: StagedBundle) -> None:
    """Read an archive member by member; never let tarfile write anything."""
    seen: set[str] = set()
    raw = open(source, "rb")  # noqa: SIM115 - closed below
    try:
        try:
            archive = tarfile.open(fileobj=raw, mode="r|*")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UnsafeBundleError(f"{show(str(source))} is not a readable tar archive: {exc}") from None
        with archive:
            while True:
                try:
                    member = archive.next()
                except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                    raise UnsafeBundleError(f"archive is damaged: {exc}") from None
                if member is None:
                    break
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.rstrip("/") if member.isdir() else name
                if not name or name == ".":
                    continue
                name = _check_name(name)
                budget.entry(name)
                if name in seen:
                    raise UnsafeBundleError(f"archive holds {show(name)} twice; refused")
                seen.add(name)
                if member.isdir():
                    root.joinpath(*name.split("/")).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isreg() or member.issparse():
                    raise UnsafeBundleError(
                        f"archive member {show(name)} is not a regular file or folder "
                        "(links, devices and sparse files are refused)"
                    )
                budget.add_bytes(name, 0, member.size)
                src = archive.extractfile(member)
                if src is None:
                    raise UnsafeBundleError(f"archive member {show(name)} cannot be read")
                dest = _prepare_dest(root, name)
                if dest.exists():
                    raise UnsafeBundleError(f"archive holds {show(name)} twice; refused")
                staged = _copy_stream(src, dest, name, budget, member.size)
                if staged.size != member.size:
                    raise UnsafeBundleError(f"archive member {show(name)} is truncated")
                bundle.files[name] = staged
                budget.report(raw.tell())
    except EOFError:
        raise UnsafeBundleError("archive ends early: the file is truncated") from None
    finally:
        raw.close()


def _directory_size(path: Path, limit: int) -> int | None:
    """Sum of file sizes under ``path`` (no links followed), for progress."""
    total = 0
    count = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for e in entries:
                    count += 1
                    if count > limit:
                        return None
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_size
        except OSError:
            return None
    return total


def locate_bundle(path: Path) -> Path:
    """The bundle folder for ``path``: a media root holding ``airlock/``
    resolves to that folder; a directory or archive is taken as it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UnsafeBundleError(f"{show(str(path))} does not exist: give the bundle folder or archive") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeBundleError(f"{show(str(path))} is a symbolic link; give the real path")
    if stat.S_ISDIR(st.st_mode):
        inner = path / BUNDLE_FOLDER
        try:
            inner_st = os.lstat(inner)
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(inner_st.st_mode) and not (path / "metadata").exists():
            return inner
        return path
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeBundleError(f"{show(str(path))} is neither a folder nor an archive file")
    return path


def stage_bundle(
    source: Path,
    staging: Path,
    *,
    limits: BundleLimits = BundleLimits(),
    progress: Progress | None = None,
) -> StagedBundle:
    """Copy the bundle at ``source`` into the new folder ``staging``.

    Returns the staged bundle, rooted at the repository folders.  Raises
    :class:`UnsafeBundleError` on anything that is not plainly safe; the
    caller removes ``staging`` then.
    """
    source = locate_bundle(Path(source))
    staging.mkdir(parents=True, exist_ok=False)
    raw_root = staging / "bundle"
    raw_root.mkdir()
    staged = StagedBundle(root=raw_root, source=str(source))
    if source.is_dir():
        budget = _Budget(limits, progress, _directory_size(source, limits.max_files))
        _stage_directory(source, raw_root, budget, staged)
    else:
        budget = _Budget(limits, progress, os.stat(source).st_size)
        _stage_tar(source, raw_root, budget, staged)
        _strip_bundle_folder(staged)
    budget.report(budget.total)
    if not staged.files:
        raise UnsafeBundleError(f"{show(str(source))} holds no files: is this an Airlock bundle?")
    for rel in staged.files:
        parts = rel.split("/")
        if len(parts) < 3 or parts[1] not in ("metadata", "targets"):
            raise UnsafeBundleError(
                f"bundle entry {show(rel)} is outside <repository>/metadata/ and "
                "<repository>/targets/: not an Airlock bundle layout"
            )
    return staged


def _strip_bundle_folder(staged: StagedBundle) -> None:
    """An archive of the ``airlock/`` folder: make its contents the root."""
    names = list(staged.files)
    prefix = BUNDLE_FOLDER + "/"
    if not names or not all(n.startswith(prefix) for n in names):
        return
    if any(n.split("/")[1] in ("metadata", "targets") and len(n.split("/")) == 3 for n in names):
        return  # a repository that is itself named "airlock"
    staged.root = staged.root / BUNDLE_FOLDER
    staged.files = {
        n[len(prefix):]: StagedFile(n[len(prefix):], f.path, f.size, f.sha256) for n, f in staged.files.items()
    }
