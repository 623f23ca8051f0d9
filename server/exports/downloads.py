"""Exports made from the console or the admin API, kept under the home
(``state/exports/``) for an admin to download.  The export itself is
``airlock export``'s (``appliance/export``): the app is built with it as
its *export runner* (``airlock serve`` gives it), so that this package
never imports the appliance.  The newest :data:`KEEP` files are kept; the
record of every export stays in the export history."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from server.devices.exceptions import NotFoundError
from server.settings import Settings
from signing.exceptions import AirlockError

KEEP = 10  # export files kept for download
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.tar(\.enc)?")


class Made(Protocol):
    path: str
    message: str


ExportRunner = Callable[..., Made]  # (settings, folder, operator, *, encrypt_for=None) -> result


class ExportUnavailableError(AirlockError):
    """This server was not given an export runner (not ``airlock serve``)."""

    status = 409
    code = "conflict"


def folder(settings: Settings) -> Path:
    return settings.state_dir / "exports"


def make(settings: Settings, runner: ExportRunner | None, operator: str, encrypt_for: str | None) -> Made:
    """Write one export into :func:`folder` with ``runner``; one line when refused."""
    if runner is None:
        raise ExportUnavailableError("this server cannot write exports: the console does only when started with "
                                     "`airlock serve`; use `airlock export DEST` instead")
    where = folder(settings)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    made = runner(settings, where, operator, encrypt_for=encrypt_for)
    files = sorted((p for p in where.iterdir() if FILE_NAME.fullmatch(p.name)), key=lambda p: p.stat().st_mtime)
    for old in files[:-KEEP]:
        old.unlink(missing_ok=True)
    return made


def available(settings: Settings) -> set[str]:
    where = folder(settings)
    return {p.name for p in where.iterdir() if FILE_NAME.fullmatch(p.name)} if where.is_dir() else set()


def path_of(settings: Settings, name: str) -> Path:
    """An export file kept for download, or a 404 saying it is not kept."""
    if not FILE_NAME.fullmatch(name) or name not in available(settings):
        raise NotFoundError(f"export file {name[:80]!r} is not kept here: the newest {KEEP} exports made from the "
                            "console or the admin API can be downloaded")
    return folder(settings) / name
