"""One error vocabulary: every AirlockError answers the API's one JSON shape
with its own status and stable code, the OpenAPI document and the device
API's documentation list exactly the codes the code can return, and pages
outside /api/ keep their own form."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import appliance
import server
import signing
from server import create_app
from server.console import permissions
from server.errors import CODES, HTTP_CODES
from server.repositories.store import RepositoryStore
from server.settings import load_settings
from signing.exceptions import AirlockError
from tests.conftest import pin

DOC = Path(__file__).resolve().parents[3] / "docs" / "device-api.md"


def _all_error_classes() -> set[type[AirlockError]]:
    for package in (signing, server, appliance):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith(("__main__", ".wsgi")) or ".migrations" in module.name:  # wsgi builds the app
                continue
            importlib.import_module(module.name)
    found, todo = set(), [AirlockError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def _codes_of(cls: type[AirlockError]) -> set[str]:
    return {cls.code, *getattr(cls, "CODES", {}).values()}


def test_every_error_class_has_a_status_and_a_listed_code():
    classes = _all_error_classes()
    assert len(classes) > 20
    used = set(HTTP_CODES.values())
    for cls in classes:
        assert 400 <= cls.status <= 599, cls
        assert _codes_of(cls) <= set(CODES), f"{cls.__name__}'s code is not in server.errors.CODES"
        used |= _codes_of(cls)
    assert used == set(CODES), "CODES lists codes no error class or HTTP error answers with"


def test_the_device_api_doc_lists_exactly_the_codes():
    text = DOC.read_text()
    listed = text.split("Codes:", 1)[1].split("\n- ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", listed))
    assert documented == set(CODES), (f"missing in docs/device-api.md: {sorted(set(CODES) - documented)}; "
                                      f"not a code: {sorted(documented - set(CODES))}")


def test_the_openapi_document_enumerates_the_codes(home):
    client = create_app(load_settings(home, environ={})).test_client()
    spec = client.get("/api/v1/openapi.json").json
    assert spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"] == sorted(CODES)


@pytest.fixture
def app(airlock, sim, tmp_path, home, monkeypatch):
    assert pin(airlock, sim, tmp_path).code == 0
    app = create_app(load_settings(home, environ={}))

    @app.post("/api/v1/_publish_again")
    def publish_again():
        # A real store operation that the store refuses: the tree exists.
        RepositoryStore(app.config["AIRLOCK"].public_dir, "acme").create(b"{}", 1)
        return "unreachable"

    monkeypatch.setitem(permissions.TABLE, "publish_again", permissions.public("a test's own route"))
    return app


def test_a_store_error_over_http_has_the_documented_shape_and_a_stable_code(app):
    from server.devices.views import VALIDATOR

    r = app.test_client().post("/api/v1/_publish_again")
    assert r.status_code == 500 and r.is_json
    assert r.json["error"] == "repository_error" and "already published" in r.json["message"]
    VALIDATOR.validate(r.json, {"$ref": "#/components/schemas/Error"})  # the documented shape, nothing else


def test_device_api_errors_are_unchanged(app):
    client = app.test_client()
    r = client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json["error"] == "invalid_token"
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="airlock"'
    r = client.post("/api/v1/checkin", data="{}", headers={"Authorization": "Bearer nope",
                                                          "Content-Type": "text/plain"})
    assert r.status_code == 401  # the token is checked first, as before
    r = client.post("/api/v1/enroll", data=b"{", content_type="application/json")
    assert (r.status_code, r.json["error"]) == (400, "malformed_json")
    r = client.post("/api/v1/enroll", data="{}", content_type="text/plain")
    assert (r.status_code, r.json["error"]) == (415, "unsupported_media_type")
    r = client.post("/api/v1/admin/devices/d-1/accept")
    assert (r.status_code, r.json["error"]) == (401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    r = client.post("/api/v1/admin/devices/d-1/explode")  # credentials are checked before anything else
    assert (r.status_code, r.json["error"]) == (401, "unauthorized")
    r = client.get("/api/v1/nothing-here")
    assert (r.status_code, r.json["error"]) == (404, "not_found")


def test_the_report_form_still_answers_refusals_as_pages(app):
    r = app.test_client().get("/report/d-1?k=wrong")
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "Unknown label" in r.get_data(as_text=True)


def test_no_free_database_connection_is_a_503_to_retry_not_an_internal_error(app, monkeypatch):
    """Every pooled PostgreSQL connection of a worker taken for 30 s (an
    overloaded appliance) is 503 ``unavailable`` with Retry-After, nothing
    applied, through Flask and through the check-ins' own path alike; a
    page outside /api/ says so as a page."""
    from playhouse.pool import MaxConnectionsExceeded

    from server.devices import services
    from server.devices.views import plain_checkin
    from tests.functional.devices.client import SimDevice

    def exhausted(*_args, **_kwargs):
        raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")

    @app.get("/_busy_page")
    def busy_page():
        exhausted()

    monkeypatch.setitem(permissions.TABLE, "busy_page", permissions.public("a test's own route"))
    monkeypatch.setattr(services, "authenticate", exhausted)
    monkeypatch.setattr(services, "enroll", exhausted)
    client = app.test_client()
    r = client.post("/api/v1/checkin", json={"firmware": "1.0.0"}, headers={"Authorization": "Bearer x"})
    assert (r.status_code, r.json["error"], r.json["retry_after"]) == (503, "unavailable", 30)
    assert r.headers["Retry-After"] == "30"
    r = client.post("/api/v1/enroll", json=SimDevice("busy-1").enrollment())
    assert (r.status_code, r.json["error"], r.headers["Retry-After"]) == (503, "unavailable", "30")
    status, body, headers = plain_checkin(app, "x", "application/json", b'{"firmware": "1.0.0"}', "127.0.0.1")
    assert (status, body["error"], ("Retry-After", "30") in headers) == (503, "unavailable", True)
    r = client.get("/_busy_page")
    assert r.status_code == 503 and r.mimetype == "text/html" and r.headers["Retry-After"] == "30"


def test_a_path_with_an_empty_segment_is_not_found_not_redirected(app):
    """"%2F" in a device id is an empty path segment once decoded: a 404 in
    the API's JSON shape, not Werkzeug's HTML redirect to the path with the
    slashes merged (or the 405 of whichever route that path then hits)."""
    client = app.test_client()
    for url in ("/api/v1/admin/devices/%2F/accept", "/api/v1/admin/devices/x%2F/accept", "/api/v1//checkin"):
        r = client.post(url)
        assert (r.status_code, r.is_json, r.json["error"]) == (404, True, "not_found"), url
