"""Counts of target files the app itself served (``/repos/<name>/targets/``),
for ``/metrics``: how many answers and how many bytes, per repository.

Each gunicorn worker keeps its own counts and writes them, after every
download, to ``HOME/state/downloads/<pid>.json`` (a small file replaced
whole; a download is a firmware file, rare next to polls, so one small
write each is cheap).  ``/metrics`` adds up every file.  ``airlock serve``
folds the files of earlier runs into ``base.json`` before its workers
start, so a worker never finds a file of a dead process under its own pid
(a worker that does, after a pid came round again inside one run, folds it
first).  Bytes are those answered (the body's length), whether or not the
client read them all.

Files that nginx serves in front of the app (docs/nginx-airlock-site.conf
serves ``/repos/`` itself) never reach the app and are not counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from flask import Flask, Response, current_app, request

from server.settings import Settings

logger = logging.getLogger(__name__)

FOLDER = "downloads"  # inside the state folder
BASE = "base.json"
_TARGET = re.compile(r"^/repos/([^/]{1,128})/targets/")
MAX_REPOSITORIES = 1000  # distinct names kept per file (names are pinned repositories)
_lock = threading.Lock()
_counts: dict[str, list[int]] = {}  # repository -> [answers, bytes], this process
_owner: tuple[int, str] | None = None  # (pid, token) that owns this process's file


def _folder(settings: Settings) -> Path:
    return settings.state_dir / FOLDER


def _read(path: Path) -> dict[str, list[int]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    counts = doc.get("counts") if isinstance(doc, dict) else None
    if not isinstance(counts, dict):
        return {}
    return {str(k): [int(v[0]), int(v[1])] for k, v in counts.items()
            if isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) for n in v)}


def _write(path: Path, counts: dict[str, list[int]], token: str | None = None) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"token": token, "counts": counts}))
    os.replace(tmp, path)


def _add(into: dict[str, list[int]], counts: dict[str, list[int]]) -> None:
    for name, (n, size) in counts.items():
        if name in into or len(into) < MAX_REPOSITORIES:
            total = into.setdefault(name, [0, 0])
            total[0] += n
            total[1] += size


@contextlib.contextmanager
def _folded(settings: Settings):
    """The folder, locked against other folds; yields (folder, base counts) and writes base back."""
    folder = _folder(settings)
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = _read(folder / BASE)
        yield folder, base
        _write(folder / BASE, base)


def fold(settings: Settings) -> None:
    """Fold every worker's file into ``base.json`` (``airlock serve``, before its workers start).
    Writes nothing when there is nothing to fold (a serve that served no download leaves the home as it was)."""
    folder = _folder(settings)
    if not folder.is_dir() or not any(folder.glob("[0-9]*.json")):
        return
    with _folded(settings) as (folder, base):
        for path in folder.glob("[0-9]*.json"):
            _add(base, _read(path))
            path.unlink(missing_ok=True)


def totals(settings: Settings) -> dict[str, tuple[int, int]]:
    """Repository -> (answers, bytes) served by the app, every worker and earlier run added up."""
    folder = _folder(settings)
    out: dict[str, list[int]] = {}
    _add(out, _read(folder / BASE))
    if folder.is_dir():
        for path in folder.glob("[0-9]*.json"):
            _add(out, _read(path))
    return {name: (n, size) for name, (n, size) in sorted(out.items())}


def _record(settings: Settings, repository: str, size: int) -> None:
    global _owner
    pid = os.getpid()
    with _lock:
        if _owner is None or _owner[0] != pid:  # first download of this process (or a forked child)
            _counts.clear()
            token = secrets.token_hex(8)
            with _folded(settings) as (folder, base):
                mine = folder / f"{pid}.json"
                if mine.exists():  # a dead process's, under a pid that came round again
                    _add(base, _read(mine))
                    mine.unlink()
            _owner = (pid, token)
        _add(_counts, {repository: [1, size]})
        _write(_folder(settings) / f"{pid}.json", _counts, _owner[1])


def _after(response: Response) -> Response:
    if response.status_code in (200, 206):
        match = _TARGET.match(request.path)
        if match:
            try:
                _record(current_app.config["AIRLOCK"], match.group(1), response.content_length or 0)
            except OSError as exc:  # a full disk must not fail the download
                logger.warning("cannot count a download: %s", exc)
    return response


def register(app: Flask) -> None:
    app.after_request(_after)
