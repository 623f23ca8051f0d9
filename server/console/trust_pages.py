"""The console's Trust pages (auditors first): every pinned repository's
roles, keys, thresholds and expiries, who signed each current file, the
delegation tree and the root history, and the raw signed JSON of any
metadata file it serves, as text/plain (never rendered as HTML).  Thin views
over ``server.console.trust``."""

from __future__ import annotations

from flask import Response, current_app, g, render_template, request

from server.console import trust as trust_view
from server.console.query import parse
from server.console.views import bp
from server.repositories.services import list_repositories


@bp.get("/trust")
def trust_index():
    parse("list_repositories", request.args)
    return render_template("console/trust_index.html", title="Trust", repositories=list_repositories(),
                           user=g.airlock_session)


@bp.get("/trust/<name>")
def trust(name: str):
    parse("show_trust", request.args)
    view = trust_view.trust(current_app.config["AIRLOCK"], name)
    return render_template("console/trust.html", title="Trust", t=view, user=g.airlock_session)


@bp.get("/trust/<name>/metadata/<filename>")
def trust_raw(name: str, filename: str):
    data = trust_view.raw_metadata(current_app.config["AIRLOCK"], name, filename)
    response = Response(data, mimetype="text/plain")
    response.headers["Content-Disposition"] = "inline"
    return response
