"""Writing the published repository as a bundle for USB media.

A bundle holds ``airlock/<name>/metadata/`` (every root version, the
timestamp and the current snapshot, targets and delegated metadata) and
``airlock/<name>/targets/`` (the current targets' files, by hash name), as a
folder on the media or as a ``.tar``/``.tar.gz`` of that folder.  Archives
hold only regular files and folders, owned by 0:0, modes 0644/0755.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from signing.durable import PendingFile, fsync_dir, fsync_file
from signing.exceptions import WorkspaceError

if TYPE_CHECKING:
    from signing.workspace import Workspace

BUNDLE_FOLDER = "airlock"
FORMATS = ("dir", "tar", "tar.gz")


def published_files(ws: Workspace) -> list[tuple[str, Path]]:
    """(path inside the repository folder, source file) for a full bundle."""
    layout = ws.layout
    versions = ws.published_versions()
    if not versions:
        raise WorkspaceError("nothing is published yet: run 'airlock-sign publish' first")
    roots = layout.root_versions()
    if roots != list(range(1, roots[-1] + 1)):
        raise WorkspaceError(f"root versions in {layout.metadata} are not 1..{roots[-1]}: a root file is missing")
    files = [(f"metadata/{v}.root.json", layout.published_file("root", v)) for v in roots]
    files.append(("metadata/timestamp.json", layout.published_file("timestamp")))
    for role, version in sorted(versions.items()):
        if role in ("root", "timestamp"):
            continue
        path = layout.published_file(role, version)
        files.append((f"metadata/{path.name}", path))
        if role == "snapshot":
            continue
        for target_path, target in ws._read(path, role).signed.targets.items():
            sha = target.hashes.get("sha256")
            src = layout.target_file(target_path, sha) if sha else None
            if src is None or not src.is_file() or src.stat().st_size != target.length:
                raise WorkspaceError(
                    f"the file of target {target_path} ({role} v{version}) is missing or changed in "
                    f"{layout.targets}: add the target again"
                )
            files.append((f"targets/{src.relative_to(layout.targets).as_posix()}", src))
    return files


def _earlier_targets(old: Path, name: str) -> set[str]:
    """'targets/...' paths of repository ``name`` in an earlier bundle."""
    found: set[str] = set()
    if old.is_dir():
        for base in (old / BUNDLE_FOLDER / name, old / name):
            if (base / "targets").is_dir():
                for dirpath, _, filenames in os.walk(base / "targets"):
                    for f in filenames:
                        found.add((Path(dirpath) / f).relative_to(base).as_posix())
                return found
    elif old.is_file():
        seen = False
        try:
            with tarfile.open(old, "r:*") as tar:
                for member in tar:
                    parts = member.name.removeprefix("./").split("/")
                    if parts[:1] == [BUNDLE_FOLDER]:
                        parts = parts[1:]
                    seen = seen or parts[:1] == [name]
                    if member.isfile() and len(parts) > 2 and parts[0] == name and parts[1] == "targets":
                        found.add("/".join(parts[1:]))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise WorkspaceError(f"cannot read the earlier bundle {old}: {e}") from None
        if seen:
            return found
    else:
        raise WorkspaceError(f"earlier bundle {old} does not exist")
    raise WorkspaceError(f"{old} holds no bundle of repository {name}")


def write_bundle(
    name: str, files: list[tuple[str, Path]], dest: Path, *, fmt: str = "dir", exclude_from: Path | None = None
) -> Path:
    if fmt not in FORMATS:
        raise WorkspaceError(f"bundle format {fmt!r} is unknown: use one of {', '.join(FORMATS)}")
    if exclude_from is not None:
        earlier = _earlier_targets(exclude_from, name)
        files = [(rel, src) for rel, src in files if rel not in earlier]
    if fmt == "dir":
        return _write_dir(name, files, dest)
    return _write_tar(name, files, dest, compress=fmt == "tar.gz")


def _write_dir(name: str, files: list[tuple[str, Path]], media: Path) -> Path:
    final = media / BUNDLE_FOLDER / name
    if final.exists() or final.is_symlink():
        raise WorkspaceError(f"{final} already exists: use fresh media or remove the old bundle first")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{name}.partial-"))
    except OSError as e:
        raise WorkspaceError(f"cannot write to {media}: {e.strerror}") from None
    try:
        folders = {tmp}
        for sub in ("metadata", "targets"):
            (tmp / sub).mkdir(mode=0o755)
        for rel, src in files:
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            folders.update(tmp / p for p in Path(rel).parents)
            shutil.copyfile(src, out)
            os.chmod(out, 0o644)
            fsync_file(out)  # a stick pulled right after the command must hold the whole bundle
        os.chmod(tmp, 0o755)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_tar(name: str, files: list[tuple[str, Path]], dest: Path, *, compress: bool) -> Path:
    if dest.exists() or dest.is_symlink():
        raise WorkspaceError(f"{dest} already exists: choose a new file name")
    prefix = f"{BUNDLE_FOLDER}/{name}"
    folders = {BUNDLE_FOLDER, prefix, f"{prefix}/metadata", f"{prefix}/targets"}
    for rel, _ in files:
        parts = f"{prefix}/{rel}".split("/")[:-1]
        folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    now = int(time.time())

    def info(member: str, *, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(member)
        ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        ti.mode = 0o755 if is_dir else 0o644
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = now
        ti.size = size
        return ti

    try:
        pending = PendingFile(dest.parent, prefix=f".{dest.name}.")
    except OSError as e:
        raise WorkspaceError(f"cannot write {dest}: {e.strerror}") from None
    with pending:
        with tarfile.open(fileobj=pending.file, mode="w:gz" if compress else "w", format=tarfile.PAX_FORMAT) as tar:
            for folder in sorted(folders):
                tar.addfile(info(folder, is_dir=True))
            for rel, src in sorted(files):
                with open(src, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(info(f"{prefix}/{rel}", is_dir=False, size=size), f)
        pending.commit(dest, overwrite=False)
    return dest
