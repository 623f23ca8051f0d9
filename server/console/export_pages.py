"""The console's Exports page: the export history (every export, from the
console, the admin API or ``airlock export`` alike) and, for admins,
making an export to download (optionally encrypted to a repository's
export key) and downloading the newest ones kept.  Thin views over
``server.exports``; the export itself runs as ``airlock export`` does."""

from __future__ import annotations

from flask import current_app, g, redirect, render_template, request, send_file

from server.console.query import parse
from server.console.views import bp
from server.exports import downloads
from server.exports.services import export_history
from server.repositories.services import list_repositories

HISTORY = 50


@bp.get("/exports")
def exports():
    q = parse("list_exports", request.args, ignore_empty=True, also=("made",))
    settings = current_app.config["AIRLOCK"]
    made = request.args.get("made", "")
    return render_template("console/exports.html", title="Exports", history=export_history(q.get("limit", HISTORY)),
                           kept=downloads.available(settings), repositories=list_repositories(),
                           made=made if made.isdigit() else None, user=g.airlock_session)


@bp.post("/exports")
def export_make():
    encrypt_for = request.form.get("encrypt_for") or None
    made = downloads.make(current_app.config["AIRLOCK"], current_app.config["AIRLOCK_EXPORT_RUNNER"],
                          f"{g.airlock_session.username} (console)", encrypt_for)
    return redirect(f"/exports?made={getattr(made, 'sequence', '')}", code=303)


@bp.get("/exports/files/<name>")
def export_file(name: str):
    return send_file(downloads.path_of(current_app.config["AIRLOCK"], name), mimetype="application/octet-stream",
                     as_attachment=True, download_name=name, max_age=0)
