"""Which folder or file a permission error is really about, and whose.

``open()`` says ``Permission denied: HOME/airlock.toml`` when the user may
not enter HOME at all, and SQLite says ``attempt to write a readonly
database``: neither names what to fix.  :func:`explain_denied` walks the
path from ``/`` and names the first folder the user may not enter, or the
file it may not read or write, with its owner and mode, and the user.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def current_user() -> str:
    return _name(os.geteuid())


def _may(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def first_denied(path: Path, write: bool = False) -> tuple[Path, str] | None:
    """The first thing on the way to ``path`` this user may not use, and
    what it may not do to it ("enter", "read", "write", "create files in");
    None when nothing is in the way."""
    path = Path(os.path.abspath(path))
    for folder in [*reversed(path.parents)]:
        if not folder.exists():
            return None  # a missing folder is another error
        if not _may(folder, os.X_OK):
            return folder, "enter"
    if path.exists():
        if path.is_dir() and not _may(path, os.X_OK):
            return path, "enter"
        if not _may(path, os.R_OK):
            return path, "read"
        if write and not _may(path, os.W_OK):
            return path, "write"
        return None
    if write and not _may(path.parent, os.W_OK):
        return path.parent, "create files in"
    return None


def _owned(st: os.stat_result) -> tuple[str, str]:
    """(the owner's name, "kind owned by owner:group, mode NNNN")."""
    owner, group = _name(st.st_uid), _group(st.st_gid)
    kind = "folder" if stat.S_ISDIR(st.st_mode) else "file"
    return owner, f"{kind} owned by {owner}:{group}, mode {stat.S_IMODE(st.st_mode):04o}"


def explain_denied(path: Path, write: bool = False) -> str | None:
    """One sentence naming the folder or file, its owner and mode, and the
    user who lacks access, with what to do; None when access is not the
    problem."""
    found = first_denied(path, write)
    if found is None:
        return None
    where, verb = found
    owner, described = _owned(where.stat())
    user = current_user()
    return (f"user {user} may not {verb} {where} ({described}): run airlock as {owner} "
            f"(e.g. `sudo -u {owner} airlock ...`) or give {user} access")


def explain_not_owner(path: Path) -> str | None:
    """For "Operation not permitted" (changing a mode or owner): one sentence
    naming the file or folder's owner when this user is not it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_uid == os.geteuid() or os.geteuid() == 0:
        return None
    owner, described = _owned(st)
    return (f"user {current_user()} may not change {path} ({described}): only its owner may; run airlock as "
            f"{owner} (e.g. `sudo -u {owner} airlock ...`)")
