"""Writing one file to removable media so that a pulled or full stick never
leaves a half file under the final name.

The file is written as ``DEST/.<final name>.<random>.partial``, created with
``O_EXCL | O_NOFOLLOW`` (an existing name, or a symbolic link planted on the
stick, is never followed or overwritten), hashed as it is written, flushed
with ``fsync``, renamed to its final name without replacing anything
(``renameat2(RENAME_NOREPLACE)``), and the folder is flushed too.  Flushing
and renaming are separate steps so that the caller can note what it is about
to publish in between.  On any error the partial file is removed (as far as
the media still allows) and earlier files are untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from signing.exceptions import AirlockError
from signing.paths import show

_RENAME_NOREPLACE = 1
_renameat2: Callable[..., int] | None
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # an old C library
    _renameat2 = None


class MediaError(AirlockError):
    """The export cannot be written to the media."""


def describe(exc: OSError, final: str, written: int) -> str:
    """One line an operator can act on, for an OSError while writing."""
    tail = f"nothing was written under {final}; earlier exports on the media are intact"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the export media is full after {written} bytes: {tail}; use a larger stick or free space on it"
    if exc.errno in (errno.EIO, errno.ENODEV, errno.ENXIO, errno.ENOENT, errno.EROFS):
        return (f"the export media failed ({exc.strerror}) after {written} bytes (was the stick pulled out?): "
                f"{tail}; plug it in again and repeat the export")
    return f"cannot write the export ({exc.strerror or exc}) after {written} bytes: {tail}"


def open_folder(dest: Path) -> int:
    """A descriptor of the destination folder; it must be a real folder."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        raise MediaError(f"{show(str(dest))} does not exist: give the folder of the mounted stick") from None
    if stat.S_ISLNK(st.st_mode):
        raise MediaError(f"{show(str(dest))} is a symbolic link; give the real folder")
    if not stat.S_ISDIR(st.st_mode):
        raise MediaError(f"{show(str(dest))} is not a folder: give the folder of the mounted stick")
    return os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def rename_noreplace(dir_fd: int, src: str, dst: str) -> None:
    if _renameat2 is not None:
        if _renameat2(dir_fd, src.encode(), dir_fd, dst.encode(), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    if exists(dir_fd, dst):  # a file system without RENAME_NOREPLACE: check, then rename
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def file_digest(dir_fd: int, name: str, limit: int) -> tuple[int, str] | None:
    """(length, SHA-256) of the regular file ``name`` in the folder, read
    without following links and at most ``limit`` + 1 bytes (so a length
    above ``limit`` shows); None if there is no such regular file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:  # missing, a symbolic link, unreadable
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        h, n = hashlib.sha256(), 0
        while n <= limit:
            chunk = f.read(min(1 << 20, limit + 1 - n))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def remove_partials(dir_fd: int, final: str) -> list[str]:
    """Remove the hidden partial files an interrupted write of ``final`` left
    (only names this module makes, never following links); their names."""
    pattern = re.compile(re.escape(f".{final}.") + r"[0-9a-f]{8}\.partial")
    removed = []
    for name in os.listdir(dir_fd):
        if pattern.fullmatch(name):
            try:
                os.unlink(name, dir_fd=dir_fd)
                removed.append(name)
            except OSError:
                pass
    return removed


class MediaFile:
    """``write`` bytes, ``flush`` them to the media, then ``publish`` (rename,
    flush the folder); or ``abort``."""

    def __init__(self, dir_fd: int, final: str):
        self.dir_fd = dir_fd
        self.final = final
        self.partial = f".{final}.{secrets.token_hex(4)}.partial"
        self.written = 0
        self._hash = hashlib.sha256()
        if exists(dir_fd, final):
            raise MediaError(f"{final} exists on the media already, and this appliance did not record writing it; "
                             "move it away or use another stick, then export again")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd: int | None = os.open(self.partial, flags, 0o644, dir_fd=dir_fd)  # None once closed

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data) -> int:
        assert self.fd is not None, "written after flush or abort"
        view = memoryview(data)
        self._hash.update(view)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n
        return len(data)

    def flush(self) -> None:
        """The bytes are on the media (under the hidden name)."""
        assert self.fd is not None, "flushed twice, or after abort"
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None

    def publish(self) -> None:
        """Rename to the final name (never replacing one) and flush the folder."""
        try:
            rename_noreplace(self.dir_fd, self.partial, self.final)
        except FileExistsError:
            raise MediaError(f"{self.final} appeared on the media while exporting; nothing was overwritten") from None
        os.fsync(self.dir_fd)

    def abort(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(OSError):  # a pulled stick: nothing to do; the partial name is never the final name
            os.unlink(self.partial, dir_fd=self.dir_fd)
