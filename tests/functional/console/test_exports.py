"""The Exports page and its admin API: an admin makes an export (the same
signed file `airlock export` writes) and downloads it; the history lists
every export; an auditor reads the history but neither makes nor downloads
one; without `airlock serve`'s export runner the console says how to
export instead."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile

from jsonschema import Draft202012Validator

from appliance.export import run_export
from server import create_app
from server.settings import load_settings
from server.users import services
from server.users.throttle import LoginThrottle
from tests.functional.console.conftest import PASSWORDS


def session_client(app, name: str):
    client = app.test_client()
    session, cookie = services.login(name, PASSWORDS[name], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    return client, session.csrf


def auth(name: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{PASSWORDS[name]}".encode()).decode()}


def test_admin_makes_and_downloads_an_export(console_home):
    app = create_app(load_settings(console_home, environ={}), export_runner=run_export)
    ada, csrf = session_client(app, "ada")
    assert "No export yet." in ada.get("/exports").get_data(as_text=True)
    made = ada.post("/exports", data={"csrf": csrf, "encrypt_for": ""})
    assert made.status_code == 303 and made.headers["Location"] == "/exports?made=1"
    page = ada.get(made.headers["Location"]).get_data(as_text=True)
    assert "Export 1 is written" in page
    link = re.search(r'<a href="(/exports/files/([^"]+))" download>', page)
    assert link, page
    file = ada.get(link.group(1))
    assert file.status_code == 200 and file.mimetype == "application/octet-stream"
    assert f'filename={link.group(2)}' in file.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(file.data)) as tar:
        assert "manifest.json" in " ".join(tar.getnames())
    row = re.search(r'<tr data-export="1">(.*?)</tr>', page, re.S).group(1)
    assert "ada (console)" in row and hashlib.sha256(file.data).hexdigest()[:16] in row

    aude, aude_csrf = session_client(app, "aude")
    seen = aude.get("/exports").get_data(as_text=True)
    assert link.group(2) in seen and 'id="make-export"' not in seen and "/exports/files/" not in seen
    assert aude.get(link.group(1)).status_code == 403
    assert aude.post("/exports", data={"csrf": aude_csrf}).status_code == 403
    otto, _ = session_client(app, "otto")
    assert otto.get("/exports").status_code == 403
    assert ada.get("/exports/files/airlock-export-x-000009.tar").status_code == 404


def test_the_exports_api(console_home):
    app = create_app(load_settings(console_home, environ={}), export_runner=run_export)
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json

    def check(path: str, method: str, answer) -> None:
        schema = spec["paths"][path][method]["responses"][str(answer.status_code)]["content"][
            "application/json"]["schema"]
        Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json)

    assert client.post("/api/v1/admin/exports", headers=auth("aude")).status_code == 403
    made = client.post("/api/v1/admin/exports", headers=auth("ada"))
    assert made.status_code == 201, made.json
    check("/admin/exports", "post", made)
    assert made.json["export"]["operator"] == "ada (api)" and "wrote export 1" in made.json["message"]
    listed = client.get("/api/v1/admin/exports", headers=auth("aude"))
    check("/admin/exports", "get", listed)
    assert [e["sequence"] for e in listed.json["exports"]] == [1]
    file = client.get(made.json["download"], headers=auth("ada"))
    assert file.status_code == 200 and hashlib.sha256(file.data).hexdigest() == made.json["export"]["file_sha256"]
    assert client.get(made.json["download"], headers=auth("aude")).status_code == 403
    refused = client.post("/api/v1/admin/exports?encrypt_for=nope", headers=auth("ada"))
    assert refused.status_code == 400 and "nope" in refused.json["message"]
    check("/admin/exports", "post", refused)


def test_without_the_export_runner_the_console_says_how_to_export(console_home):
    app = create_app(load_settings(console_home, environ={}))
    ada, csrf = session_client(app, "ada")
    answer = ada.post("/exports", data={"csrf": csrf})
    assert answer.status_code == 409 and "airlock export DEST" in answer.get_data(as_text=True)
