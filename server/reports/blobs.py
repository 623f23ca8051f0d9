"""Attachment content on disk, content-addressed: ``HOME/reports/blobs/ab/<sha256>``.

Attachments never go into SQLite: a core dump would bloat the database that
every check-in writes to.  A blob is written to a temporary file, fsynced and
renamed into place before the report that names it is committed, so a
committed report never points at a missing or half-written file; a crash in
between leaves at most an unreferenced blob (bounded by one report's
attachments), never a dangling reference.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path


def blob_dir(home: Path) -> Path:
    return home / "reports" / "blobs"


def blob_path(home: Path, sha256: str) -> Path:
    return blob_dir(home) / sha256[:2] / sha256


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def put(home: Path, content: bytes) -> str:
    """Store ``content`` (if not there yet) and return its sha256 hex."""
    sha = digest(content)
    final = blob_path(home, sha)
    if final.exists():
        return sha
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = final.parent / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return sha
