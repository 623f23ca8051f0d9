"""Checks on names that become file names: repository names, target paths
and role names.

A name a bundle supplies is refused unless it is plainly safe: it cannot
climb out of the repository folder, cannot hide behind odd encodings and
reads the same on every file system and in every terminal.

The repository-name rule is defined here once, for both tools: the vendor's
``airlock-sign init`` and the appliance's ``airlock repo add`` refuse the
same names with the same message.
"""

import re
import unicodedata
from urllib.parse import quote

from signing.exceptions import RepositoryNameError, UnsafeNameError

MAX_TARGET_PATH = 1024  # characters
MAX_COMPONENT = 200  # bytes in UTF-8, leaves room for a 64-hex hash prefix

MAX_REPO_NAME = 63  # characters: one DNS label, so the name fits a host name or URL too

_REPO_NAME = re.compile(rf"[a-z0-9][a-z0-9-]{{0,{MAX_REPO_NAME - 1}}}")
_ROLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOP_LEVEL = {"root", "timestamp", "snapshot", "targets"}
MAX_ROLE_FILE_NAME = 240  # bytes: a delegated role's quoted file name, "<version>.<quoted name>.json"


def show(name: str) -> str:
    """Render an untrusted name for a log line or terminal: escapes only."""
    return ascii(name)


def check_repo_name(name: str) -> str:
    """Return ``name`` if it is allowed as a repository name: it becomes a
    folder in bundles and on the appliance, and a path under ``/repos/``."""
    if not isinstance(name, str) or not _REPO_NAME.fullmatch(name):
        raise RepositoryNameError(
            f"repository name {show(name)} is not allowed: use lower-case letters, digits and '-', "
            f"at most {MAX_REPO_NAME}, starting with a letter or digit"
        )
    return name


def check_role_name(name: str) -> str:
    """Return ``name`` if it is safe as a delegated role's file name."""
    if not isinstance(name, str) or not _ROLE_NAME.match(name) or ".." in name:
        raise UnsafeNameError(
            f"role name {show(name)} is not allowed: use letters, digits, "
            "'.', '_' and '-' only (at most 128), starting with a letter or digit"
        )
    if name in _TOP_LEVEL:
        raise UnsafeNameError(
            f"role name {show(name)} is reserved for a top-level role"
        )
    return name


def role_filename(version: int, role: str) -> str:
    """The file a role's metadata is published under, as TUF clients request
    it: ``<version>.<name>.json`` with the name URL-quoted as python-tuf
    quotes it (``quote(name, "")``; tuf-js's ``encodeURIComponent`` asks for
    the same file, since the server decodes either).  Quoting leaves only
    letters, digits, ``_.-~`` and ``%``: never a ``/``, and the version
    prefix means never a hidden file nor ``.`` or ``..``."""
    if role in ("root", "timestamp"):
        return f"{version}.{role}.json"
    return f"{version}.{quote(role, safe='')}.json"


def check_delegated_role_name(name: str) -> str:
    """Return ``name`` if a delegated role of a vendor's repository may use
    it: any TUF role name, so long as its file name (:func:`role_filename`)
    stays within :data:`MAX_ROLE_FILE_NAME` bytes."""
    if not isinstance(name, str) or not name:
        raise UnsafeNameError("a delegated role has an empty name")
    if name in _TOP_LEVEL:
        raise UnsafeNameError(f"role name {show(name)} is reserved for a top-level role")
    if len(role_filename(10**18, name)) > MAX_ROLE_FILE_NAME:
        raise UnsafeNameError(f"role name {show(name)[:60]}... is too long: its quoted file name would be over "
                              f"{MAX_ROLE_FILE_NAME} bytes")
    return name


def check_target_path(path: str) -> str:
    """Return ``path`` if it is a safe relative target path."""

    def refuse(why: str) -> UnsafeNameError:
        return UnsafeNameError(
            f"target path {show(path)} refused: {why}; the vendor must rename the target"
        )

    if not isinstance(path, str) or not path:
        raise refuse("empty")
    if len(path) > MAX_TARGET_PATH:
        raise refuse(f"longer than {MAX_TARGET_PATH} characters")
    if unicodedata.normalize("NFC", path) != path:
        raise refuse("not in Unicode normal form NFC")
    for ch in path:
        cat = unicodedata.category(ch)
        if ch in "\\\x00" or cat.startswith("C") or cat in ("Zl", "Zp"):
            raise refuse(f"contains the character {ascii(ch)}")
    if path.startswith("/"):
        raise refuse("absolute path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise refuse("empty, '.' or '..' path component")
        if len(part.encode("utf-8")) > MAX_COMPONENT:
            raise refuse(f"a path component is longer than {MAX_COMPONENT} bytes")
    return path


def split_target_path(path: str) -> tuple[str, str]:
    """Split a checked target path into its folder ('' at top) and base name."""
    folder, _, base = check_target_path(path).rpartition("/")
    return folder, base
