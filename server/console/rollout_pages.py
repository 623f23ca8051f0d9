"""The console's Rollouts pages: every rollout with its state, and one
rollout's waves (size and counts), its gate's thresholds and why it halted;
for admins, the steps pause, resume, advance and abort.  Thin views over
``server.rollouts.services``, which checks each step against the rollout's
state and audits it; who may post is the permission table's, with the
session's CSRF token."""

from __future__ import annotations

from flask import current_app, g, redirect, render_template, request

from server.console.views import bp
from server.rollouts import services
from server.rollouts.exceptions import RolloutArgumentError, RolloutNotFoundError
from server.rollouts.openapi import STATES, STEPS

# which steps the services accept in each state (the page offers only these)
STEPS_IN = {
    "running": ("pause", "advance", "abort"),
    "paused": ("resume", "advance", "abort"),
    "halted": ("resume", "abort"),
    "aborted": (),
    "completed": (),
}


@bp.get("/rollouts")
def rollouts():
    unknown = set(request.args) - {"state"}
    if unknown:
        raise RolloutArgumentError(f"unknown query parameter {sorted(unknown)[0][:40]!r}: this page takes state")
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        raise RolloutArgumentError(f"state {state[:40]!r} is not one of {', '.join(STATES)}")
    found = services.list_rollouts(state, current_app.config["AIRLOCK"])
    return render_template("console/rollouts.html", title="Rollouts", rollouts=found, state=state, states=STATES,
                           user=g.airlock_session)


@bp.get("/rollouts/<int:number>")
def rollout(number: int):
    found = services.show(number, current_app.config["AIRLOCK"])
    return render_template("console/rollout.html", title="Rollouts", r=found, steps=STEPS_IN.get(found.state, ()),
                           user=g.airlock_session)


@bp.post("/rollouts/<int:number>/<action>")
def rollout_step(number: int, action: str):
    if action not in STEPS:
        raise RolloutNotFoundError(f"no step {action[:40]!r}: use one of {', '.join(STEPS)}")
    operator = f"{g.airlock_session.username} (console)"
    if action == "abort":
        services.abort(number, operator, request.form.get("reason", ""))
    else:
        getattr(services, action)(number, operator)
    return redirect(f"/rollouts/{number}", code=303)
