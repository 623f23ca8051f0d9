"""Bundles uploaded through the console or the admin API, and the import job
that runs on each, outside the request.

An upload is streamed into a job folder under the appliance's home
(``state/uploads/JOB/``), never into memory; the web layer then hands the
job to the *import runner* the app was built with (``airlock serve`` gives
it one from ``appliance/``: a separate process running the same import
pipeline as ``airlock import``).  That process writes the job's progress and
its outcome to ``job.json`` in the folder (atomic replaces), and the pages
and the API read it from there.  The import's own record (accepted,
unchanged or refused, with its reason) goes to the import history as every
import's does; the job file is the live view of it.

This module owns the job folders; nothing else writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from server.clock import now_iso
from server.devices.exceptions import NotFoundError
from server.settings import Settings
from signing.durable import write_atomic
from signing.exceptions import AirlockError

JOB_ID = re.compile(r"[0-9a-f]{16}")
STATES = ("uploaded", "running", "finished", "failed")
KEEP_JOBS = 50  # finished job folders kept for the console's list; older ones go
MAX_NAME = 120  # characters of an uploaded file's name kept for display

# A callable the app is built with: start the import of ``job`` (in the
# background; return at once).
ImportRunner = Callable[[Settings, "ImportJob"], None]


class UploadError(AirlockError):
    """An upload the appliance cannot take."""

    status = 400
    code = "invalid_request"


@dataclass(frozen=True)
class ImportJob:
    id: str
    operator: str
    filename: str  # as the browser or script named it (display only, escaped when shown)
    size: int  # bytes uploaded
    created_at: str
    state: str  # uploaded | running | finished | failed
    phase: str | None = None  # the importer's current phase
    done: int = 0  # bytes of the phase
    total: int | None = None
    files: int = 0
    pid: int | None = None  # the process running it
    status: str | None = None  # accepted | unchanged | refused, when finished
    message: str | None = None  # the verification report or the exact reason for refusal
    import_id: int | None = None  # the import history's record, when one was written
    finished_at: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("pid")
        return out

    @property
    def over(self) -> bool:
        return self.state in ("finished", "failed")


def uploads_dir(settings: Settings) -> Path:
    return settings.state_dir / "uploads"


def _job_dir(settings: Settings, job_id: str) -> Path:
    if not JOB_ID.fullmatch(job_id):
        raise NotFoundError("no such import job: a job id is 16 hexadecimal digits")
    return uploads_dir(settings) / job_id


def bundle_path(settings: Settings, job: ImportJob) -> Path:
    """Where the job's uploaded bundle is (until its import ends)."""
    return _job_dir(settings, job.id) / "bundle"


def incoming_file(settings: Settings):
    """An anonymous temporary file under the home for an upload in flight
    (removed when closed); :func:`create_job` links it into a job folder."""
    folder = uploads_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return tempfile.NamedTemporaryFile(dir=folder, prefix=".incoming-", delete=True)  # noqa: SIM115


def _safe_name(name: str) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return base[:MAX_NAME] or "bundle"


def create_job(settings: Settings, incoming: str | Path, filename: str, operator: str) -> ImportJob:
    """A job for the uploaded file at ``incoming`` (hard-linked into the job's
    folder, so the upload's temporary file may be closed afterwards)."""
    size = os.stat(incoming).st_size
    if size == 0:
        raise UploadError("the uploaded file is empty: choose a bundle (.tar or .tar.gz) and upload it again")
    _prune(settings)
    job_id = uuid.uuid4().hex[:16]
    folder = _job_dir(settings, job_id)
    folder.mkdir(mode=0o700)
    os.link(incoming, folder / "bundle")
    job = ImportJob(job_id, operator, _safe_name(filename), size, now_iso(), "uploaded")
    save(settings, job)
    return job


def save(settings: Settings, job: ImportJob) -> None:
    write_atomic(_job_dir(settings, job.id) / "job.json", json.dumps(asdict(job), sort_keys=True).encode(),
                 mode=0o600)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_job(settings: Settings, job_id: str) -> ImportJob:
    path = _job_dir(settings, job_id) / "job.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"no import job {job_id}: it never was, or it was old and removed") from None
    job = ImportJob(**data)
    if not job.over and job.state == "running" and not _alive(job.pid):
        # the process died without writing its outcome (killed, power lost)
        return _fields(job, state="failed", message="the import process stopped before it finished; see the import "
                       "history for what was recorded, and upload the bundle again")
    return job


def _fields(job: ImportJob, **changes) -> ImportJob:
    return ImportJob(**{**asdict(job), **changes})


def update(settings: Settings, job: ImportJob, **changes) -> ImportJob:
    """Write the job with ``changes`` (the runner's progress and outcome)."""
    new = _fields(job, **changes)
    save(settings, new)
    if new.over:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bundle_path(settings, new))
    return new


def list_jobs(settings: Settings, limit: int = 20) -> list[ImportJob]:
    """The newest jobs first."""
    folder = uploads_dir(settings)
    jobs = []
    if folder.is_dir():
        for entry in folder.iterdir():
            if JOB_ID.fullmatch(entry.name):
                try:
                    jobs.append(read_job(settings, entry.name))
                except (NotFoundError, ValueError, TypeError):
                    continue
    jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
    return jobs[:limit]


def _prune(settings: Settings) -> None:
    """Remove the oldest finished job folders beyond :data:`KEEP_JOBS`."""
    finished = [j for j in list_jobs(settings, limit=10 * KEEP_JOBS) if j.over]
    for job in finished[KEEP_JOBS:]:
        shutil.rmtree(_job_dir(settings, job.id), ignore_errors=True)


def start(settings: Settings, job: ImportJob, runner: ImportRunner | None) -> ImportJob:
    """Hand ``job`` to the runner; without one (the app was not started by
    ``airlock serve``) the job fails at once, saying so."""
    if runner is None:
        return update(settings, job, state="failed", finished_at=now_iso(),
                      message="this server cannot run imports: the console runs them only when started with "
                              "`airlock serve`; import with `airlock import` instead")
    runner(settings, job)
    return read_job(settings, job.id)
