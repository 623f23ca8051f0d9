"""Writing files so that they survive a crash or a pulled stick: one helper
for every durable write in Airlock.

The pattern is always the same: write a temporary file in the destination's
own folder (so the rename cannot cross file systems), ``fsync`` it, give it
its final mode, rename it into place, then ``fsync`` the folder so that the
rename itself is on disk.  A reader sees the old file or the new one, never
half of one; after a crash the temporary file is all that can be left over
(named ``.<name>.<random>.tmp``, so nothing mistakes it for the real file).

Only the standard library: ``signing/`` is the lowest layer, and ``server``
and ``appliance`` use these helpers too.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

# errors from os.link on file systems without hard links (FAT, exFAT, some FUSE)
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def fsync_dir(path: Path | str) -> None:
    """Flush a folder's entries (a new, renamed or removed name) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    """Flush a file's content to disk (for a file written by someone else,
    e.g. :func:`shutil.copyfile`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingFile:
    """A temporary file in ``folder`` that becomes its final file on
    :meth:`commit`, or disappears when the ``with`` block ends without one.

    Use it when the content is streamed, or when the final name is only
    known once the content is written (a name derived from its hash)::

        with PendingFile(folder) as pending:
            pending.file.write(...)
            pending.commit(folder / name)
    """

    def __init__(self, folder: Path | str, *, prefix: str = ".incoming."):
        self.folder = Path(folder)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=prefix, suffix=".tmp")
        self.path = Path(tmp)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.committed = False

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            self.discard()

    def commit(self, dest: Path | str, *, mode: int = 0o644, overwrite: bool = True) -> Path:
        """Flush and fsync the content, give it ``mode``, move it to ``dest``
        (in the same folder) and fsync the folder.

        With ``overwrite=False`` an existing ``dest`` is left alone and
        :class:`FileExistsError` raised, atomically where the file system
        has hard links (a check just before the rename elsewhere).
        """
        dest = Path(dest)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.chmod(self.path, mode)
        if overwrite:
            os.replace(self.path, dest)
        else:
            _rename_no_replace(self.path, dest)
        self.committed = True
        fsync_dir(dest.parent)
        return dest

    def discard(self) -> None:
        """Close and remove the temporary file."""
        if not self.file.closed:
            self.file.close()
        self.path.unlink(missing_ok=True)


def _rename_no_replace(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except FileExistsError:
        src.unlink(missing_ok=True)
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(dest):
            src.unlink(missing_ok=True)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dest)) from None
        os.rename(src, dest)
        return
    src.unlink()


def write_atomic(path: Path | str, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Replace (or, with ``overwrite=False``, create) ``path`` with ``data``
    durably: temporary file in the same folder, fsync, rename, fsync the
    folder (which must exist)."""
    path = Path(path)
    with PendingFile(path.parent, prefix=f".{path.name}.") as pending:
        pending.file.write(data)
        pending.commit(path, mode=mode, overwrite=overwrite)

