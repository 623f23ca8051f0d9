"""``/healthz``: is the appliance able to serve?"""

from flask import Blueprint, current_app, jsonify

from server.clock import utcnow
from server.db import check_schema
from server.freshness import all_freshness
from server.models import database
from server.repositories.models import Repository
from server.repositories.store import RepositoryStore
from server.timekeeping import clock_health
from signing.exceptions import AirlockError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    settings = current_app.config["AIRLOCK"]
    problems = []
    try:
        check_schema(database.obj)
        names = [r.name for r in Repository.select(Repository.name)]
    except (AirlockError, Exception) as exc:  # noqa: BLE001 - report, never crash the probe
        problems.append(f"database: {exc}")
        names = []
    repos = {}
    for name in names:
        store = RepositoryStore(settings.public_dir, name)
        ok = store.exists()
        repos[name] = "ok" if ok else "missing"
        if not ok:
            problems.append(f"repository {name}: published tree missing")
    clock = None
    try:
        health = clock_health(settings)
        clock = health.to_dict()
        if health.problem:
            problems.append(f"clock: {health.problem}")
    except Exception as exc:  # noqa: BLE001 - report, never crash the probe
        problems.append(f"clock: the time mark cannot be read ({exc})")
    warnings = []  # not yet a problem: what will become one
    try:
        warnings = [f.warning for f in all_freshness(settings, utcnow()) if f.warning]
    except Exception as exc:  # noqa: BLE001 - report, never crash the probe
        warnings.append(f"timestamps: cannot be read ({exc})")
    status = 200 if not problems else 503
    return jsonify(status="ok" if not problems else "degraded", repositories=repos, clock=clock,
                   problems=problems, warnings=warnings), status
