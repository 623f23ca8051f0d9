"""The console's Releases page: the active releases (and, asked for, the
withdrawn ones) with shadowed approvals marked, who runs which version,
and, for admins, approving a target for a model or a group and withdrawing
a release.  Thin views over ``server.devices.services``, which audits each
change; who may post is the permission table's, with the session's CSRF
token."""

from __future__ import annotations

from flask import current_app, g, redirect, render_template, request

from server.console import repositories as repository_view
from server.console.query import parse
from server.console.views import bp
from server.devices import services
from server.devices.exceptions import InvalidRequestError


def release_form(form) -> dict:
    """The approve form's fields as ``services.approve``'s arguments: the
    target is one "REPOSITORY TARGET" choice; scope is a model or a group."""
    repository, _, target = (form.get("target") or "").partition(" ")
    if not repository or not target:
        raise InvalidRequestError("choose the target to release")
    hardware = form.get("hardware", "").strip() or None
    group = form.get("group", "").strip() or None
    if (hardware is None) == (group is None):
        raise InvalidRequestError("give either a model or a group (not both)")
    return {"repository": repository, "target_path": target, "hardware": hardware, "group": group,
            "allow_downgrade": form.get("allow_downgrade") == "1"}


@bp.get("/releases")
def releases():
    q = parse("list_releases", request.args, ignore_empty=True)
    everything = q.get("all") == "1"
    found = services.list_releases(include_withdrawn=everything)
    repositories = repository_view.repositories(current_app.config["AIRLOCK"]) if g.airlock_session.role == "admin" \
        else []
    return render_template("console/releases.html", title="Releases", releases=found, everything=everything,
                           running=services.firmware_versions(), repositories=repositories, user=g.airlock_session)


@bp.post("/releases")
def release_approve():
    fields = release_form(request.form)
    services.approve(current_app.config["AIRLOCK"], fields.pop("repository"), fields.pop("target_path"),
                     f"{g.airlock_session.username} (console)", **fields)
    return redirect("/releases", code=303)


@bp.post("/releases/<int:release_id>/withdraw")
def release_withdraw(release_id: int):
    services.withdraw(release_id, f"{g.airlock_session.username} (console)")
    return redirect("/releases", code=303)
