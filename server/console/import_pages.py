"""The console's Repositories and Imports pages: each repository's targets,
the import history with what each import changed, and, for admins, the
upload of a bundle whose import runs outside the request (see
``server.imports.uploads``) while its page shows the progress: polled by
``static/import-progress.js``, or, without script, by the page refreshing
itself until the verdict is in."""

from __future__ import annotations

from flask import current_app, g, jsonify, redirect, render_template, request

from server.console import repositories as repository_view
from server.console.query import parse
from server.console.uploads import job_from_form
from server.console.views import bp
from server.imports import uploads
from server.imports.services import import_history

HISTORY = 50  # imports the page lists
REFRESH = 2  # seconds between refreshes of a running job's page without script


@bp.get("/repositories")
def repositories():
    parse("list_repositories", request.args)
    found = repository_view.repositories(current_app.config["AIRLOCK"])
    return render_template("console/repositories.html", title="Repositories", repositories=found,
                           user=g.airlock_session)


@bp.get("/imports")
def imports():
    parse("list_imports", request.args, ignore_empty=True)
    settings = current_app.config["AIRLOCK"]
    return render_template("console/imports.html", title="Imports", history=import_history(limit=HISTORY),
                           jobs=uploads.list_jobs(settings, limit=10), limit=HISTORY,
                           max_upload=settings.max_upload_bytes, user=g.airlock_session)


@bp.post("/imports")
def import_upload():
    job = job_from_form(request, f"{g.airlock_session.username} (console)")
    return redirect(f"/imports/jobs/{job.id}", code=303)


@bp.get("/imports/jobs/<job_id>")
def import_job(job_id: str):
    job = uploads.read_job(current_app.config["AIRLOCK"], job_id)
    g.airlock_script = not job.over  # the progress script (pages.CSP_WITH_SCRIPT)
    return render_template("console/import_job.html", title="Import", job=job, refresh=None if job.over else REFRESH,
                           user=g.airlock_session)


@bp.get("/imports/jobs/<job_id>/progress")
def import_job_progress(job_id: str):
    """The job as JSON, for the page's script (same session, same roles)."""
    return jsonify(uploads.read_job(current_app.config["AIRLOCK"], job_id).to_dict())
