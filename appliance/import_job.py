"""The console's import runner: runs an uploaded bundle's import in its own
process, outside the web request, and writes its progress and outcome to
the job (``server.imports.uploads``).

``airlock serve`` builds the app with :func:`start_job` as its import
runner; the runner starts ``python -m appliance.import_job HOME JOB`` in a
new session (a gunicorn worker that restarts does not take the import with
it) and reaps it from a thread.  The import itself is ``airlock import``'s
(:func:`appliance.importer.import_bundle`): the same lock, verification,
atomic publication and record.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from appliance.importer import import_bundle
from server import bind_database
from server.clock import now_iso
from server.imports import uploads
from server.imports.services import import_history
from server.imports.uploads import ImportJob
from server.settings import Settings, load_settings
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

WRITE_INTERVAL = 0.3  # seconds between two progress writes within a phase


def start_job(settings: Settings, job: ImportJob) -> None:
    """The import runner ``airlock serve`` gives the app."""
    proc = subprocess.Popen([sys.executable, "-m", "appliance.import_job", str(settings.home), job.id],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                            start_new_session=True)
    # the process writes its own pid and progress into the job: one writer
    threading.Thread(target=proc.wait, name=f"import-job-{job.id}", daemon=True).start()


class JobProgress:
    """``signing.bundle.Progress`` that writes the job file: at once on a new
    phase, otherwise at most every :data:`WRITE_INTERVAL` seconds."""

    def __init__(self, settings: Settings, job: ImportJob):
        self.settings, self.job = settings, job
        self.last = 0.0

    def __call__(self, done: int, total: int | None = None, files: int = 0, *, phase: str | None = None) -> None:
        now = time.monotonic()
        new_phase = phase is not None and phase != self.job.phase
        if not new_phase and now - self.last < WRITE_INTERVAL:
            return
        self.last = now
        self.job = uploads.update(self.settings, self.job, phase=phase or self.job.phase, done=done, total=total,
                                  files=max(files, self.job.files))


def run(settings: Settings, job_id: str) -> ImportJob:
    """Import the job's bundle and write its outcome; returns the job."""
    job = uploads.read_job(settings, job_id)
    job = uploads.update(settings, job, state="running", pid=os.getpid())
    progress = JobProgress(settings, job)
    source = uploads.bundle_path(settings, job)
    try:
        bind_database(settings)
        result = import_bundle(settings, source, job.operator, progress=progress)
    except AirlockError as exc:
        # the importer recorded its refusal (or, expired and unchanged, its no-op) under this job's source
        record = next((e for e in import_history(limit=20) if e.source == str(source)), None)
        return uploads.update(settings, progress.job, state="finished", status=record.status if record else "refused",
                              message=str(exc), import_id=record.id if record else None, finished_at=now_iso())
    except Exception as exc:  # noqa: BLE001 - the job must say it failed; the trace goes to the log
        logger.exception("import job %s failed", job_id)
        return uploads.update(settings, progress.job, state="failed", message=f"the import failed: {exc}",
                              finished_at=now_iso())
    return uploads.update(settings, progress.job, state="finished", status=result.status, message=result.message,
                          import_id=result.import_id, finished_at=now_iso())


def main(argv: list[str]) -> int:
    home, job_id = argv
    logging.basicConfig(level=logging.WARNING, format="airlock import job: %(levelname)s %(message)s")
    run(load_settings(home), job_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
