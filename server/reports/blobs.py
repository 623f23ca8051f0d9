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
from pathlib import Path

from signing.durable import write_atomic


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
    write_atomic(final, content, mode=0o640)
    return sha
