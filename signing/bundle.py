"""Read a bundle from untrusted media into a private staging folder.

A bundle is a directory, or a ``.tar``/``.tar.gz`` of one, holding
``<repo>/metadata/`` and ``<repo>/targets/`` per repository (on USB media it
is the folder ``airlock/`` at the media's root).

Reading happens in two passes, so that nothing the signed metadata does not
vouch for is ever copied:

1. :func:`scan_bundle` checks every entry (regular files and folders only,
   safe names, caps on count, size and time), copies the metadata files into
   staging and catalogues the target files (name and size) without reading
   them.
2. After the metadata is verified, :meth:`StagedBundle.fetch_targets` copies
   only the target files it lists, each read at most up to its signed length
   and hashed with every listed algorithm while it is copied.

From then on only the appliance's own copy is read: a stick that changes
under us cannot make verification and publication see different bytes.
Directories on media are walked with ``O_NOFOLLOW`` and ``lstat``; archives
are parsed member by member and never extracted by :mod:`tarfile` itself.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from signing._copy import (  # noqa: F401 - re-exported for callers and tests
    CHUNK,
    PHASE_METADATA,
    PHASE_PUBLISH,
    PHASE_TARGETS,
    PHASE_VERIFY,
    PIPELINE_MIN,
    BundleLimits,
    Progress,
    StagedFile,
    _Budget,
    _copy,
    _copy_pipelined,
    _new_hash,
)
from signing.exceptions import UnsafeBundleError, UnsafeNameError
from signing.paths import check_target_path, show

BUNDLE_FOLDER = "airlock"
MAX_METADATA_FILE = 16 * 1024 * 1024  # bytes; larger metadata is refused while reading
GZIP_FREE_BYTES = 1 << 30  # bytes decompressed before the ratio limit applies
MAX_GZIP_RATIO = 200  # decompressed / compressed, past GZIP_FREE_BYTES

def _check_name(name: str) -> str:
    try:
        return check_target_path(name)
    except UnsafeNameError as exc:
        raise UnsafeBundleError(f"bundle entry {show(name)} has an unsafe name: {exc}") from None


def _classify(name: str) -> str:
    """'metadata', 'target' or 'folder' for a bundle path; refuse the rest."""
    parts = name.split("/")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in ("metadata", "targets")):
        return "folder"
    if parts[1] == "metadata" and len(parts) == 3:
        return "metadata"
    if parts[1] == "targets":
        return "target"
    raise UnsafeBundleError(f"bundle entry {show(name)} is outside <repository>/metadata/ and "
                            "<repository>/targets/: not an Airlock bundle layout")


@dataclass
class StagedBundle:
    """A bundle after the first pass: metadata copied, targets catalogued."""

    source: Path
    kind: str  # dir | tar | tar.gz
    root: Path  # staging folder for this bundle's copies
    limits: BundleLimits
    prefix: str = ""  # "airlock/" when an archive holds that folder
    metadata: dict[str, StagedFile] = field(default_factory=dict)  # "<repo>/metadata/<name>"
    targets: dict[str, int] = field(default_factory=dict)  # "<repo>/targets/<rel>" -> size
    target_folders: set[str] = field(default_factory=set)  # "<repo>/targets/<rel>" that are folders
    offsets: dict[str, int] = field(default_factory=dict)  # plain tar: member data offsets
    fetched: dict[str, StagedFile] = field(default_factory=dict)
    files_copied: int = 0  # into staging, both passes: what a progress bar counts

    @property
    def repositories(self) -> list[str]:
        return sorted({rel.split("/", 1)[0] for rel in (*self.metadata, *self.targets)})

    @property
    def files(self) -> int:
        return len(self.metadata) + len(self.targets)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.metadata.values()) + sum(self.targets.values())

    @property
    def digest(self) -> str:
        """SHA-256 identifying the bytes this bundle delivered, hex.

        It covers every file in the bundle, sorted by name: its name (below
        the bundle folder), its length, and its content hash.  A metadata
        file's SHA-256 is computed while the scan copies it.  A target file
        is named by its content hash (``<hash>.<basename>``), so its name
        already carries it: the entry's hash is ``null`` while the content
        is what the name says, and the actual SHA-256 once a copy
        (:meth:`fetch_targets`) found otherwise.  So the digest of a genuine
        bundle does not depend on which targets the appliance already held,
        a tampered file the appliance read changes it, and no file is read
        for the digest alone.  A folder and an archive give the same digest.
        """
        manifest = [[n, f.size, f.hashes["sha256"]] for n, f in self.metadata.items()]
        for n, size in self.targets.items():
            copy = self.fetched.get(n)
            as_named = copy is None or _named_hash(n) in copy.hashes.values()
            manifest.append([n, size, None if copy is None or as_named else copy.hashes["sha256"]])
        manifest.sort()
        return hashlib.sha256(json.dumps(manifest, separators=(",", ":")).encode()).hexdigest()

    def metadata_file(self, repo: str, filename: str) -> StagedFile | None:
        return self.metadata.get(f"{repo}/metadata/{filename}")

    def target_size(self, repo: str, relpath: str) -> int | None:
        """The size of a target file in the bundle, or None when the bundle
        does not carry it.  A folder where the file belongs is refused: it is
        neither the file nor its absence."""
        name = f"{repo}/targets/{relpath}"
        if name in self.target_folders:
            raise UnsafeBundleError(f"{show(name)} is a folder where a target file belongs; refused: "
                                    "write the bundle again with the file itself")
        return self.targets.get(name)

    def fetch_targets(self, wanted: dict[str, tuple[int, list[str]]], *, progress: Progress | None = None) -> None:
        """Copy the target files ``wanted`` ("<repo>/targets/<rel>" -> (signed
        length, hash algorithms)) into staging; results in :attr:`fetched`."""
        # sha256 always, for the bundle's digest, whatever the metadata lists
        todo = {n: (length, sorted(set(algorithms) | {"sha256"}))
                for n, (length, algorithms) in wanted.items() if n not in self.fetched}
        if not todo:
            return
        budget = _Budget(self.limits, progress, sum(length for length, _ in todo.values()),
                         phase=PHASE_TARGETS, files_done=self.files_copied)
        budget.report(force=True)
        dest_root = self.root / "targets"
        if self.kind == "dir":
            for name, (length, algorithms) in sorted(todo.items()):
                with _open_in(self.source, name) as src:
                    self.fetched[name] = _copy(src, dest_root / name, name, length, algorithms, budget)
        elif self.kind == "tar":
            with open(self.source, "rb", buffering=0) as raw:
                for name, (length, algorithms) in sorted(todo.items(), key=lambda kv: self.offsets[kv[0]]):
                    raw.seek(self.offsets[name])
                    src = _Window(raw, self.targets[name])
                    self.fetched[name] = _copy(src, dest_root / name, name, length, algorithms, budget)
        else:
            for member, raw_name, archive in _members(self.source, self.kind, budget):
                stripped = _strip_prefix(raw_name)
                if stripped is not None and stripped in todo and member.isreg():
                    name = stripped
                    length, algorithms = todo.pop(name)
                    src = archive.extractfile(member)
                    self.fetched[name] = _copy(src, dest_root / name, name, length, algorithms, budget)
                    if not todo:
                        break
        self.files_copied = budget.copied
        budget.report(force=True)
        missing = [n for n in wanted if n not in self.fetched]
        if missing:
            raise UnsafeBundleError(f"{show(missing[0])} vanished from the bundle between two reads; refused")


def _named_hash(relpath: str) -> str:
    """The content hash a target file's name claims: ``<hash>.<basename>``."""
    return relpath.rsplit("/", 1)[-1].split(".", 1)[0]


class _Window:
    """A reader over ``size`` bytes of a raw file from its current offset."""

    def __init__(self, raw, size: int):
        self.raw = raw
        self.left = size

    def readinto(self, view) -> int:
        if self.left <= 0:
            return 0
        n = self.raw.readinto(view[: min(len(view), self.left)])
        self.left -= n
        return n


class _open_in:
    """Open ``relpath`` under ``root`` one component at a time, following no
    link; a context manager yielding an unbuffered reader."""

    def __init__(self, root: Path, relpath: str):
        self.root = root
        self.parts = relpath.split("/")
        self.fds: list[int] = []

    def __enter__(self):
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.fds.append(fd)
        try:
            for part in self.parts[:-1]:
                fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                self.fds.append(fd)
            fd = os.open(self.parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise UnsafeBundleError(f"{show('/'.join(self.parts))} cannot be opened any more ({exc.strerror}); "
                                    "it changed on the media; refused") from None
        self.fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeBundleError(f"{show('/'.join(self.parts))} is no longer a regular file; refused")
        return os.fdopen(os.dup(fd), "rb", buffering=0)

    def __exit__(self, *exc):
        for fd in self.fds:
            os.close(fd)


def _scan_directory(bundle: StagedBundle, budget: _Budget) -> None:
    def walk(dir_fd: int, prefix: str) -> None:
        with os.scandir(dir_fd) as entries:
            names = sorted(e.name for e in entries)
        for leaf in names:
            try:
                leaf.encode("utf-8")
            except UnicodeError:
                raise UnsafeBundleError(f"bundle entry {show(prefix + leaf)} is not valid UTF-8; refused") from None
            name = _check_name(prefix + leaf)
            budget.entry(name)
            st = os.lstat(leaf, dir_fd=dir_fd)
            if stat.S_ISDIR(st.st_mode):
                kind = _classify(name)
                if kind == "metadata":
                    raise UnsafeBundleError(f"{show(name)} is a folder inside metadata/; refused")
                if kind == "target":
                    bundle.target_folders.add(name)
                fd = os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    walk(fd, name + "/")
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                kind = _classify(name)
                budget.declare(name, st.st_size)
                if kind == "target":
                    bundle.targets[name] = st.st_size
                elif kind == "metadata":
                    fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
                    with os.fdopen(fd, "rb", buffering=0) as src:
                        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                            raise UnsafeBundleError(f"{show(name)} changed while it was read; refused")
                        bundle.metadata[name] = _copy(src, bundle.root / "metadata" / name, name,
                                                      MAX_METADATA_FILE, ["sha256"], budget)
                else:
                    raise UnsafeBundleError(f"{show(name)} is a file where a repository folder belongs; refused")
            else:
                what = "symbolic link" if stat.S_ISLNK(st.st_mode) else "special file (device, FIFO or socket)"
                raise UnsafeBundleError(
                    f"bundle entry {show(name)} is a {what}; bundles hold only regular files and folders")

    fd = os.open(bundle.source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        walk(fd, "")
    finally:
        os.close(fd)


def _archive_kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(262)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise UnsafeBundleError(f"{show(str(path))} is neither a folder, a .tar nor a .tar.gz archive")


class _CountingReader:
    """Counts compressed bytes read, to bound the decompression ratio."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


class _Decompressed:
    """gzip decompression that refuses a bomb and respects the time limit,
    checked on every read (tarfile skips member data by reading it)."""

    def __init__(self, raw, budget: _Budget):
        self.compressed = _CountingReader(raw)
        # a stream reader needs only read(); typeshed asks for a whole file object
        self.gz = gzip.GzipFile(fileobj=self.compressed, mode="rb")  # type: ignore[call-overload]
        self.budget = budget
        self.out = 0

    def read(self, n: int = -1) -> bytes:
        data = self.gz.read(n if n is not None and n > 0 else CHUNK)
        self.out += len(data)
        if self.out > GZIP_FREE_BYTES and self.out > MAX_GZIP_RATIO * max(self.compressed.count, 1):
            raise UnsafeBundleError(
                f"archive decompresses to more than {MAX_GZIP_RATIO} times its size (a gzip bomb?); "
                "refused: ship an uncompressed .tar or a folder")
        self.budget.check_time()
        return data


_READ_ERRORS = (OSError, EOFError, tarfile.TarError, zlib.error)


def _members(path: Path, kind: str, budget: _Budget):
    """Yield (member, normalised name, archive) for each member."""
    with open(path, "rb") as raw:
        try:
            if kind == "tar.gz":
                # "r|" reads a stream: read() is all it calls, whatever typeshed asks for
                archive = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115 - closed by `with archive`
                    fileobj=_Decompressed(raw, budget), mode="r|")
            else:
                archive = tarfile.open(fileobj=raw, mode="r:")  # noqa: SIM115 - closed by `with archive` below
        except _READ_ERRORS as exc:
            raise UnsafeBundleError(f"{show(str(path))} is not a readable tar archive: {exc}") from None
        with archive:
            while True:
                try:
                    member = archive.next()
                except (*_READ_ERRORS, ValueError) as exc:
                    raise UnsafeBundleError(f"archive is damaged or truncated: {exc}") from None
                if member is None:
                    return
                budget.check_time()
                name = member.name
                while name.startswith("./"):
                    name = name[2:]
                name = name.rstrip("/") if member.isdir() else name
                if not name or name == ".":
                    continue
                yield member, name, archive


def _scan_archive(bundle: StagedBundle, budget: _Budget) -> None:
    seen: set[str] = set()
    entries: list[tuple[tarfile.TarInfo, str]] = []
    for member, name, archive in _members(bundle.source, bundle.kind, budget):
        name = _check_name(name)
        budget.entry(name)
        if name in seen:
            raise UnsafeBundleError(f"archive holds {show(name)} twice; refused")
        seen.add(name)
        if member.isdir():
            stripped = _strip_prefix(name)
            if stripped is not None and stripped.count("/") > 1 and stripped.split("/")[1] == "targets":
                bundle.target_folders.add(stripped)
            continue
        if not member.isreg() or member.issparse():
            raise UnsafeBundleError(f"archive member {show(name)} is not a regular file or folder "
                                    "(links, devices, FIFOs and sparse files are refused)")
        budget.declare(name, member.size)
        entries.append((member, name))
        stripped = _strip_prefix(name)
        if stripped is None and name.split("/", 1)[0] in ("metadata", "targets"):
            raise UnsafeBundleError(f"archive member {show(name)} is at the top of the archive: it holds one "
                                    f"repository's folders; pack the stick's `{BUNDLE_FOLDER}/` folder (members "
                                    f"`{BUNDLE_FOLDER}/<repository>/metadata/...`) instead")
        if stripped is None:
            raise UnsafeBundleError(f"archive member {show(name)} is outside <repository>/metadata/ and "
                                    "<repository>/targets/: not an Airlock bundle layout")
        kind = _classify(stripped)
        if kind == "metadata":
            if member.size > MAX_METADATA_FILE:
                raise UnsafeBundleError(f"{show(name)} is larger than {MAX_METADATA_FILE} bytes; refused")
            src = archive.extractfile(member)
            bundle.metadata[stripped] = _copy(src, bundle.root / "metadata" / stripped, stripped,
                                              MAX_METADATA_FILE, ["sha256"], budget)
        elif kind == "target":
            bundle.targets[stripped] = member.size
            bundle.offsets[stripped] = member.offset_data
        else:
            raise UnsafeBundleError(f"{show(name)} is a file where a repository folder belongs; refused")
        budget.report()


def _strip_prefix(name: str) -> str | None:
    """Archive names may start with ``airlock/``: drop it, unless the archive
    holds a repository that is itself named ``airlock``."""
    parts = name.split("/")
    if parts[0] == BUNDLE_FOLDER and len(parts) >= 2 and parts[1] not in ("metadata", "targets"):
        return "/".join(parts[1:])
    if len(parts) >= 3 and parts[1] in ("metadata", "targets"):
        return name
    if len(parts) == 2 and parts[1] in ("metadata", "targets"):
        return name
    return None


def locate_bundle(path: Path) -> Path:
    """The bundle for ``path``: a media root holding ``airlock/`` resolves to
    that folder; a folder or archive file is taken as it is."""
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
            _refuse_repository_folder(path)
            return path
        if stat.S_ISDIR(inner_st.st_mode) and not (path / "metadata").exists():
            return inner
        _refuse_repository_folder(path)
        return path
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeBundleError(f"{show(str(path))} is neither a folder nor an archive file")
    return path


def _refuse_repository_folder(path: Path) -> None:
    """A folder holding ``metadata/`` itself is one repository's folder
    (``usb1/airlock/acme``), given where the bundle belongs."""
    if _holds_metadata_files(path / "metadata"):
        raise UnsafeBundleError(
            f"{show(str(path))} is one repository's folder (it holds metadata/ itself): give the stick (or its "
            f"`{BUNDLE_FOLDER}/` folder), which holds one folder per repository")


def _holds_metadata_files(folder: Path) -> bool:
    """Whether ``folder`` is a real folder with a ``*.json`` file in it (a
    repository's metadata/, not a repository that is named "metadata")."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        with os.scandir(folder) as entries:  # look at 1000 entries at most
            return any(e.name.endswith(".json") for _, e in zip(range(1000), entries, strict=False))
    except OSError:
        return False


def scan_bundle(source: Path, staging: Path, *, limits: BundleLimits = BundleLimits(),
                progress: Progress | None = None) -> StagedBundle:
    """First pass over the bundle at ``source``: check every entry, copy the
    metadata into the new folder ``staging``, catalogue the targets.

    Raises :class:`UnsafeBundleError` on anything that is not plainly safe;
    the caller removes ``staging`` then.
    """
    source = locate_bundle(Path(source))
    staging.mkdir(parents=True, exist_ok=False)
    kind = "dir" if source.is_dir() else _archive_kind(source)
    bundle = StagedBundle(source=source, kind=kind, root=staging, limits=limits)
    budget = _Budget(limits, progress, None, phase=PHASE_METADATA)
    budget.report(force=True)
    try:
        if kind == "dir":
            _scan_directory(bundle, budget)
        else:
            _scan_archive(bundle, budget)
        bundle.files_copied = budget.copied
        budget.report(force=True)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise UnsafeBundleError("the appliance's disk filled up while staging the bundle; free space "
                                    "and import again") from None
        raise UnsafeBundleError(f"cannot read the bundle ({exc.strerror or exc}): the media may be damaged; "
                                "copy it again") from None
    if not bundle.metadata and not bundle.targets:
        raise UnsafeBundleError(f"{show(str(source))} holds no files: is this an Airlock bundle?")
    return bundle
