"""The device API, ``/api/v1/``: thin views over ``server.devices.services``.

Each view checks the credential, reads at most its endpoint's byte limit,
parses strictly and validates against the OpenAPI document's schema before
any service runs, so a malformed request stores nothing.  Every answer under
``/api/`` is JSON, errors included (``{"error": code, "message": ...}``, made
by ``server.errors``).
Tokens travel only in ``Authorization`` headers and are never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request
from peewee import SqliteDatabase

from server.console.permissions import api_user
from server.db import PRAGMAS, open_settings_database
from server.devices import services
from server.devices.exceptions import (
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
    UnsupportedMediaTypeError,
)
from server.devices.group_commit import GroupCommit
from server.devices.maintenance import MaintenanceScheduler
from server.devices.openapi import DEVICE_ID, build_spec
from server.devices.records import Checkin, EnrollmentRequest, UpdateReportIn
from server.devices.schema import SchemaValidator, loads_strict
from server.errors import api_error, internal_error, overloaded
from server.models import database
from server.requestlog import CHECKIN_PATH
from server.rollouts.scheduler import RolloutScheduler
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)

bp = Blueprint("devices", __name__, url_prefix="/api/v1")

LIMITS = {"enroll": 4096, "checkin": 16384, "updates": 4096, "admin": 2048}  # bytes per request body
SPEC = build_spec(LIMITS)
VALIDATOR = SchemaValidator(SPEC["components"])
_DEVICE_ID = re.compile(DEVICE_ID.strip("^$"))
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]{1,128})", re.IGNORECASE)

# Check-ins are telemetry a device sends again every interval, and they are
# most of the appliance's writes.  They go through a second connection with
# synchronous=NORMAL: in WAL mode that never corrupts the database, it can only
# lose the latest check-ins on a power cut, and any later FULL commit (every
# enrollment, admission, token revocation and update report goes through the
# FULL connection) fsyncs the shared WAL file, these frames included.  It saves
# an fsync per check-in, which is what lets one SQLite file take thousands a
# second.
CHECKIN_PRAGMAS = {**PRAGMAS, "synchronous": "normal"}


def checkin_database(settings, generic_plans: bool = False, name: str = "airlock-checkins"):
    """The check-ins' own connection: SQLite with synchronous=NORMAL, or on
    PostgreSQL with synchronous_commit=off, its equivalent (a crash of the
    database server can lose the latest check-ins, never corrupts, and every
    later durable commit flushes them too).  ``generic_plans``: on
    PostgreSQL, prepared statements run on a generic plan.  ``name``: its
    sessions' application_name on PostgreSQL (what pg_stat_activity shows)."""
    if settings.database_url and generic_plans:
        return open_settings_database(settings, synchronous_commit="off", plan_cache_mode="force_generic_plan",
                                      application_name=name)
    if settings.database_url:
        return open_settings_database(settings, synchronous_commit="off", application_name=name)
    return SqliteDatabase(str(settings.database_path), pragmas=CHECKIN_PRAGMAS, autoconnect=True)


def checkin_writer_database(settings):
    """The check-in writer's connection (server.devices.group_commit): as
    :func:`checkin_database`, and on PostgreSQL its batch statement runs
    on a generic plan.  Left to choose, PostgreSQL planned it again for
    every batch (each call's arrays differ in length, so a custom plan
    always looked cheaper), and planning took longer than running it:
    0.41 ms a batch, about a third of PostgreSQL's CPU in a 30,000-device
    herd (docs/benchmarks.md).  The generic plan is the same index scans."""
    return checkin_database(settings, generic_plans=True, name="airlock-checkin-writer")


class _ApiState:
    def __init__(self, settings):
        self.settings = settings
        self.checkin_db = checkin_database(settings)
        # The writer has a database object of its own: on PostgreSQL each is
        # a pool, and request threads waiting for the writer's commit must
        # never hold the last connection the writer needs.
        self.checkin_writer = GroupCommit(checkin_writer_database(settings))
        self.pooled = bool(settings.database_url)
        self.maintenance = MaintenanceScheduler(settings)
        self.rollouts = RolloutScheduler(settings)


@bp.record_once
def _setup(state) -> None:
    # The check-in connection opens lazily in each worker thread, after
    # gunicorn forks, and stays open for the thread's life: opening a SQLite
    # connection (and closing the last one, which checkpoints the WAL) would
    # cost more than the check-in itself.
    state.app.extensions["airlock.devices"] = _ApiState(state.app.config["AIRLOCK"])


def _api() -> _ApiState:
    return api_state(current_app)


# request helpers ---------------------------------------------------------------------

def _body(schema: str, limit: int, *, optional: bool = False) -> dict:
    """The request's JSON body, at most ``limit`` bytes, valid against ``schema``."""
    if optional and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    return json_body(schema, limit, request.mimetype, request.content_length, request.stream.read)


def json_body(schema: str, limit: int, mimetype: str, content_length: int | None,
              read: Callable[[int], bytes]) -> dict:
    """A JSON body of media type ``mimetype`` (lower case, no parameters),
    at most ``limit`` bytes, valid against ``schema``; ``read(n)`` reads at
    most n bytes of it."""
    if mimetype != "application/json":
        raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    if content_length is not None and content_length > limit:
        raise TooLargeError(f"the body is {content_length} bytes; this endpoint takes at most {limit}")
    data = read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"the body is larger than this endpoint's {limit} bytes")
    return VALIDATOR.validate(loads_strict(data), {"$ref": f"#/components/schemas/{schema}"})


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header's value."""
    m = _BEARER.fullmatch(authorization.strip())
    return m.group(1) if m else None


def _bearer() -> str | None:
    return bearer_token(request.headers.get("Authorization", ""))


def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


# device endpoints ------------------------------------------------------------------

@bp.post("/enroll")
def enroll():
    req = EnrollmentRequest(**_body("EnrollRequest", LIMITS["enroll"]))
    result = services.enroll(_api().settings, req)
    return jsonify(_without_none(asdict(result))), (200 if result.state == "accepted" else 202)


@bp.post("/checkin")
def checkin():
    return jsonify(checkin_answer(_api(), _bearer(), lambda: _body("CheckinRequest", LIMITS["checkin"]),
                                  request.remote_addr))


def checkin_answer(api: _ApiState, token: str | None, body: Callable[[], dict], address: str | None) -> dict:
    """A check-in, stored: the answer's JSON.  ``body()`` gives the request's
    validated body (read after the token is checked).  Also called outside
    Flask, for plain check-ins (appliance/fast_checkin.py)."""
    try:
        device = services.authenticate(api.checkin_db, token)
        if api.pooled:
            # PostgreSQL: the connection goes back to the pool while the
            # check-in waits for its group commit (the writer has its own),
            # so a worker's check-ins share a few connections instead of
            # holding one each.  A check-in that reports another firmware
            # version (looked up before the write), a new health flag or is
            # offered an update (read and written after it) takes one again.
            api.checkin_db.close()
        data = body()
        result = services.record_checkin(api.settings, api.checkin_db, device,
                                         Checkin(data["firmware"], data.get("metrics", {})),
                                         address=address, writer=api.checkin_writer)
    finally:
        # SQLite: the thread keeps its connection (opening one costs more than
        # a check-in).  PostgreSQL: a pooled connection goes back to the pool,
        # or a worker's threads beyond the pool's size would wait for one.
        if api.pooled and not api.checkin_db.is_closed():
            api.checkin_db.close()
    api.maintenance.poke()
    api.rollouts.poke()
    return {"checkin_interval": result.checkin_interval, "jitter": result.jitter,
            "update": asdict(result.update) if result.update else None}


def plain_checkin(app, token: str | None, mimetype: str, body: bytes,
                  address: str | None) -> tuple[int, dict, list[tuple[str, str]]]:
    """A check-in answered outside Flask (appliance/fast_checkin.py): the
    status, JSON and extra headers that the view and the app's error
    handlers would answer with."""
    try:
        return 200, checkin_answer(api_state(app), token,
                                   lambda: json_body("CheckinRequest", LIMITS["checkin"], mimetype, len(body),
                                                     lambda n: body[:n]), address), []
    except AirlockError as exc:
        data, headers = api_error(exc)
        return exc.status, data, headers
    except Exception as exc:  # noqa: BLE001 - answered as Flask answers it, and logged as Flask logs it
        busy = overloaded(exc)
        if busy is not None:
            data, headers = api_error(busy)
            return busy.status, data, headers
        app.logger.error("Exception on %s [POST]", CHECKIN_PATH, exc_info=True)
        return 500, internal_error(), []
    finally:
        if not database.is_closed():  # as the app's teardown does (an alert written on the way)
            database.close()


def api_state(app) -> _ApiState:
    """The device API's state in ``app`` (its connections and schedulers)."""
    return app.extensions["airlock.devices"]


@bp.post("/updates")
def updates():
    device = services.authenticate(database, _bearer())
    report = UpdateReportIn(**_body("UpdateReportRequest", LIMITS["updates"]))
    stored = services.record_report(device, report)
    return jsonify(status="recorded", duplicate=not stored)


@bp.get("/openapi.json")
def openapi():
    return jsonify(SPEC)


# administrators ---------------------------------------------------------------------

@bp.get("/admin/devices/<device_id>/history")
def admin_device_history(device_id: str):
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidRequestError(f"{device_id[:80]!r} is not a device id")
    return jsonify(device_id=device_id, history=[h.to_dict() for h in services.update_history(device_id)])


@bp.post("/admin/devices/<device_id>/<action>")
def admin_decision(device_id: str, action: str):
    if action not in ("accept", "reject", "decommission"):
        raise NotFoundError(f"no admin action {action!r}: use accept, reject or decommission")
    admin = api_user()  # admins only: server.console.permissions checked the credentials
    if not _DEVICE_ID.fullmatch(device_id):
        raise InvalidRequestError(f"{device_id[:80]!r} is not a device id")
    body = _body("AdminDecisionRequest", LIMITS["admin"], optional=True)
    operator = f"{admin.username} (api)"
    new_key, reason = body.get("new_key", False), body.get("reason")
    if action != "accept" and "key_fingerprint" in body:
        raise InvalidRequestError("key_fingerprint applies only to accept with new_key")
    if action == "accept":
        services.accept(device_id, operator, new_key=new_key, key_fingerprint_hex=body.get("key_fingerprint"),
                        reason=reason)
    elif action == "reject":
        services.reject(device_id, operator, new_key=new_key, reason=reason)
    else:
        if new_key:
            raise InvalidRequestError("new_key does not apply to decommission")
        services.decommission(device_id, operator, reason=reason)
    return jsonify(services.get_device(_api().settings, device_id).to_dict())
