"""The Trust pages and their admin API, on a repository whose root was
rotated (keys replaced, a threshold raised) and whose targets delegate to a
hall's role: roles, keys and who signed, the delegation tree, the root
history with what changed, and the raw signed JSON served as plain text."""

from __future__ import annotations

import base64
import hashlib
import html
import re

import pytest
from jsonschema import Draft202012Validator

from server import create_app
from server.settings import load_settings
from server.users import services
from server.users.throttle import LoginThrottle
from tests.conftest import run_airlock
from tests.functional.console.conftest import PASSWORDS
from tests.support.simulator import RepoSim


@pytest.fixture
def trusted(console_home, tmp_path):
    sim = RepoSim("acme")
    root = sim.first_root()
    (tmp_path / "root.json").write_bytes(root)
    assert run_airlock(console_home, "repo", "add", "acme", "--root", tmp_path / "root.json", "--fingerprint",
                       hashlib.sha256(root).hexdigest()).code == 0
    old_targets_key = sim.signers["targets"][0].public_key.keyid
    sim.rotate("targets", count=2, threshold=2)  # root 2: two new targets keys, threshold 2
    sim.delegate("hall-a", ["hall-a/*"])
    sim.add_target("hall-a/fw.bin", b"hall firmware", role="hall-a",
                   custom={"hardware": ["plc-x"], "version": "</td><script>alert(1)</script>"})
    sim.publish(roles=("targets", "hall-a"))
    r = run_airlock(console_home, "import", sim.write_bundle(tmp_path / "usb"))
    assert r.code == 0, r.err
    app = create_app(load_settings(console_home, environ={}))
    return app, sim, old_targets_key


def session_client(app, name: str):
    client = app.test_client()
    _, cookie = services.login(name, PASSWORDS[name], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    return client


def test_the_trust_page_shows_roles_signers_tree_and_root_history(trusted):
    app, sim, old_key = trusted
    aude = session_client(app, "aude")
    assert '<a href="/trust/acme">acme</a>' in aude.get("/trust").get_data(as_text=True)
    page = aude.get("/trust/acme")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    targets_row = re.search(r'<tr data-role="targets">(.*?)</tr>', text, re.S).group(1)
    assert "2 of 2" in targets_row and targets_row.count('class="signed"') == 2 and "not met" not in targets_row
    for signer in sim.signers["targets"]:
        assert signer.public_key.keyid[:16] in targets_row
    tree = re.search(r'<ul class="tree" id="tree">(.*?)</ul>', text, re.S).group(1)
    items = [" ".join(re.sub(r"<[^>]+>", " ", li).split()) for li in re.findall(r"<li[^>]*>(.*?)</li>", tree, re.S)]
    assert items[0] == "root" and "targets" in items and items[-1] == "hall-a (paths: hall-a/* )"
    assert 'class="depth-2">hall-a' in tree  # under targets
    history = re.search(r'<table id="root-history">(.*?)</table>', text, re.S).group(1)
    second = re.search(r'<tr data-version="2">(.*?)</tr>', history, re.S).group(1)
    assert f"targets: key {old_key[:16]} removed" in second and "targets: threshold 1 -&gt; 2" in second
    assert second.count(" added</li>") == 2
    assert "the first root" in re.search(r'<tr data-version="1">(.*?)</tr>', history, re.S).group(1)
    assert "<script>" not in text
    # raw signed JSON: the bytes devices fetch, as plain text, never HTML
    for name in ("2.root.json", "timestamp.json", "1.hall-a.json"):
        assert f'href="/trust/acme/metadata/{name}"' in text
    raw = aude.get("/trust/acme/metadata/1.hall-a.json")
    assert raw.status_code == 200 and raw.mimetype == "text/plain"
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert raw.data == sim.metadata["1.hall-a.json"] and b"<script>" in raw.data
    assert aude.get("/trust/acme/metadata/2.root.json").data == sim.metadata["2.root.json"]
    missing = aude.get("/trust/acme/metadata/..%2Fairlock.db")
    assert missing.status_code == 404
    assert aude.get("/trust/acme/metadata/99.root.json").status_code == 404
    nope = aude.get("/trust/other")
    assert nope.status_code == 404 and "no pinned repository" in html.unescape(nope.get_data(as_text=True))


def test_an_operator_may_not_see_trust(trusted):
    app, _, _ = trusted
    otto = session_client(app, "otto")
    for path in ("/trust", "/trust/acme", "/trust/acme/metadata/root.json"):
        answer = otto.get(path)
        assert answer.status_code == 403 and "an operator may not do this" in answer.get_data(as_text=True)


def test_the_trust_api_matches_its_schema(trusted):
    app, sim, old_key = trusted
    client = app.test_client()
    spec = client.get("/api/v1/openapi.json").json
    schema = spec["paths"]["/admin/repositories/{name}/trust"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    auth = {"Authorization": "Basic " + base64.b64encode(f"aude:{PASSWORDS['aude']}".encode()).decode()}
    answer = client.get("/api/v1/admin/repositories/acme/trust", headers=auth)
    assert answer.status_code == 200
    Draft202012Validator({**schema, "components": spec["components"]}).validate(answer.json)
    history = answer.json["root_history"]
    assert [v["version"] for v in history] == [1, 2] and f"targets: key {old_key[:16]} removed" in history[1]["changes"]
    assert client.get("/api/v1/admin/repositories/nope/trust", headers=auth).status_code == 404
