"""The rollouts' admin API, ``/api/v1/admin/rollouts``: thin views over
``server.rollouts.services`` for scripts with HTTP Basic credentials (who
may call each is the permission table's, ``server.console.permissions``)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from server.console.permissions import api_user
from server.devices.exceptions import TooLargeError, UnsupportedMediaTypeError
from server.devices.schema import SchemaValidator, loads_strict
from server.rollouts import services
from server.rollouts.exceptions import RolloutArgumentError, RolloutNotFoundError
from server.rollouts.openapi import STATES, STEPS, rollout_schemas
from server.rollouts.records import RolloutSpec

bp = Blueprint("rollouts_api", __name__, url_prefix="/api/v1/admin/rollouts")
LIMIT = 4096  # bytes per request body
VALIDATOR = SchemaValidator({"schemas": rollout_schemas()})


def _body(schema: str, optional: bool = False) -> dict:
    if optional and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    data = request.stream.read(LIMIT + 1)
    if len(data) > LIMIT:
        raise TooLargeError(f"the body is larger than this endpoint's {LIMIT} bytes")
    return VALIDATOR.validate(loads_strict(data), {"$ref": f"#/components/schemas/{schema}"})


@bp.get("")
def list_rollouts():
    unknown = set(request.args) - {"state"}
    if unknown:
        raise RolloutArgumentError(f"unknown query parameter {sorted(unknown)[0]!r}: only state is taken")
    state = request.args.get("state")
    if state is not None and state not in STATES:
        raise RolloutArgumentError(f"state {state!r} is not one of {', '.join(STATES)}")
    found = services.list_rollouts(state, current_app.config["AIRLOCK"])
    return jsonify(rollouts=[r.to_dict() for r in found])


@bp.post("")
def create_rollout():
    body = _body("RolloutCreateRequest")
    defaults = RolloutSpec([])
    spec = RolloutSpec(body["waves"], body.get("soak", defaults.soak), body.get("min_success", defaults.min_success),
                       body.get("min_sample", defaults.min_sample))
    r = services.create(current_app.config["AIRLOCK"], body["release_id"], spec, f"{api_user().username} (api)")
    return jsonify(r.to_dict()), 201


@bp.get("/<int:number>")
def show_rollout(number: int):
    return jsonify(services.show(number, current_app.config["AIRLOCK"]).to_dict())


@bp.post("/<int:number>/<action>")
def rollout_step(number: int, action: str):
    if action not in STEPS:
        raise RolloutNotFoundError(f"no step {action[:40]!r}: use one of {', '.join(STEPS)}")
    body = _body("RolloutStepRequest", optional=True)
    user = f"{api_user().username} (api)"
    if action == "abort":
        r = services.abort(number, user, body.get("reason", ""))
    else:
        r = getattr(services, action)(number, user)
    return jsonify(r.to_dict())
