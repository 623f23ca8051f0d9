"""The appliance's web side: TUF file serving, the device API, the console.

``create_app(settings)`` builds the Flask app; nothing is bound at import.
"""

from __future__ import annotations

import logging

from flask import Flask, request

from server import errors
from server.db import check_schema, open_settings_database
from server.models import database
from server.settings import Settings, load_settings

logger = logging.getLogger(__name__)

__all__ = ["create_app", "Settings", "load_settings"]


def close_models_database() -> None:
    """Close every connection the models' database has open in this
    process (on PostgreSQL its whole pool): before ``airlock serve`` forks
    its workers, so that none crosses the fork."""
    current = database.obj
    if current is None:
        return
    close_all = getattr(current, "close_all", None)
    if close_all is not None:
        close_all()
    elif not current.is_closed():
        current.close()


def bind_database(settings: Settings, read_only: bool = False):
    """Point the models at this appliance's database (connects lazily);
    ``read_only`` for commands that only read.

    Binding the database that is already bound keeps the same object: a
    background thread (device maintenance) in the middle of a transaction on
    it must not find its transaction stack swapped under it when the same
    process opens the appliance again (the CLI run in-process, a second app).
    """
    current = database.obj
    target = settings.database_url or settings.database_path
    if current is not None and getattr(current, "airlock_path", None) == target \
            and (read_only or not current.airlock_read_only):
        return current
    if current is not None and getattr(current, "airlock_read_only", False):
        current.close()  # a read-only one has no background thread to disturb
    db = open_settings_database(settings, read_only=read_only)
    database.initialize(db)
    return db


def create_app(settings: Settings | None = None, import_runner=None, export_runner=None) -> Flask:
    """Build the app for ``settings`` (default: from the environment).
    ``import_runner`` (``server.imports.uploads.ImportRunner``) runs the
    imports of bundles uploaded to the console, ``export_runner``
    (``server.exports.downloads.ExportRunner``) writes its exports;
    ``airlock serve`` gives both."""
    settings = settings or load_settings()
    app = Flask(__name__, static_folder=None)  # the console's blueprint serves its own files
    # A path with an empty segment ("/api/v1/admin/devices/%2F/accept") is no
    # path of ours: 404, not Werkzeug's redirect to the path with the slashes
    # merged (an HTML 308 under /api/, or a 405 from whichever route that hits).
    app.url_map.merge_slashes = False
    from server.console.uploads import UploadingRequest

    app.request_class = UploadingRequest  # an uploaded bundle streams to a file in the home
    app.config["AIRLOCK"] = settings
    app.config["AIRLOCK_IMPORT_RUNNER"] = import_runner
    app.config["AIRLOCK_EXPORT_RUNNER"] = export_runner
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20  # bytes; the device API's bodies are small
    db = bind_database(settings)
    check_schema(db)
    db.close()
    from server import requestlog

    requestlog.register(app)  # first: every later hook, and every answer, has the request id
    from server import downloads

    downloads.register(app)

    from server.devices.views import bp as devices_bp
    from server.health import bp as health_bp
    from server.metrics import bp as metrics_bp
    from server.repositories.views import bp as repos_bp

    app.register_blueprint(repos_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(devices_bp)
    from server.reports.form import bp as report_form_bp
    from server.reports.views import bp as reports_api_bp

    app.register_blueprint(reports_api_bp)
    app.register_blueprint(report_form_bp)
    from server.console.api import bp as admin_api_bp
    from server.console.permissions import enforce
    from server.console.views import bp as console_bp

    app.register_blueprint(console_bp)
    app.register_blueprint(admin_api_bp)
    from server.rollouts.views import bp as rollouts_api_bp

    app.register_blueprint(rollouts_api_bp)
    from server.delivery.views import bp as delivery_api_bp

    app.register_blueprint(delivery_api_bp)
    from server.alerts.views import bp as alerts_api_bp

    app.register_blueprint(alerts_api_bp)
    app.before_request(enforce)  # the one permission table, for every endpoint

    errors.register(app)
    if settings.behind_proxy:
        # The local nginx sets X-Forwarded-Proto and X-Forwarded-For on every
        # request (replacing any a client sent); the bind is loopback
        # (settings.py checks), so no one else can.  request.is_secure then
        # makes console cookies Secure, and request.remote_addr is the
        # device's address (check-ins record it), not nginx's.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]

    @app.teardown_appcontext
    def close_db(_exc):
        if not db.is_closed():
            db.close()

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app
