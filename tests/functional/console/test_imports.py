"""The Repositories and Imports pages and their admin API against a real
`airlock serve`: an admin uploads a signed bundle (.tar.gz) through the
console's form, the import runs in its own process while the job page
shows its phase, and the verdict is the importer's own (accepted, or the
exact reason for refusal); the same through the admin API with HTTP
Basic, every answer checked against the served OpenAPI document."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from pathlib import Path

import pytest

from server import create_app
from server.imports import uploads
from server.settings import load_settings
from tests.conftest import run_airlock
from tests.functional.console.browser import Browser
from tests.functional.console.conftest import PASSWORDS
from tests.functional.console.test_admin_api import basic
from tests.functional.devices.client import ApiClient, SpecChecker
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

JOB_LINK = re.compile(r"^/imports/jobs/([0-9a-f]{16})$")


def tar_gz(sim: RepoSim, folder: Path) -> bytes:
    media = sim.write_bundle(folder)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(media / "airlock", arcname="airlock")
    return out.getvalue()


def pin(home: Path, sim: RepoSim, tmp: Path) -> None:
    import hashlib

    root = sim.first_root()
    (tmp / "root.json").write_bytes(root)
    r = run_airlock(home, "repo", "add", sim.name, "--root", tmp / "root.json", "--fingerprint",
                    hashlib.sha256(root).hexdigest())
    assert r.code == 0, r.err


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A served appliance with users of each role and repository acme pinned
    (no bundle imported yet)."""
    root = tmp_path_factory.mktemp("imports")
    home = root / "home"
    for name, role in (("ada", "admin"), ("otto", "operator"), ("aude", "auditor")):
        (root / name).write_text(PASSWORDS[name] + "\n")
        args = ("init", "--admin", name) if role == "admin" else ("users", "add", name, "--role", role)
        assert run_airlock(home, *args, "--password-file", root / name).code == 0
    sim = RepoSim("acme")
    pin(home, sim, root)
    with airlock_server(home, workers=2, threads=4) as base:
        yield home, base, sim, root


def wait_for_verdict(browser: Browser, job_path: str) -> str:
    """The job page once the import is over (bounded: 600 polls)."""
    for _ in range(600):
        page = browser.get(job_path)
        assert page.status == 200, page.text[:300]
        if 'data-state="finished"' in page.text or 'data-state="failed"' in page.text:
            return page.text
        assert '<meta http-equiv="refresh"' in page.text  # the no-script fallback while it runs
        time.sleep(0.1)
    raise AssertionError(f"the import at {job_path} did not finish")


def upload(browser: Browser, name: str, data: bytes) -> str:
    form = browser.get("/imports")
    assert form.status == 200 and 'enctype="multipart/form-data"' in form.text
    answer = browser.upload("/imports", {"csrf": form.csrf}, "bundle", name, data)
    assert answer.status == 303, answer.text[:300]
    assert JOB_LINK.match(answer.headers["Location"]), answer.headers["Location"]
    return answer.headers["Location"]


def test_admin_uploads_a_bundle_and_gets_it_accepted(served):
    home, base, sim, root = served
    sim.add_target("fw/plc-x-2.1.0.bin", b"firmware two" * 1000, version="2.1.0", hardware=("plc-x", "plc-y"))
    sim.publish()
    bundle = tar_gz(sim, root / "usb-accepted")
    ada = Browser(base)
    assert ada.login("ada", PASSWORDS["ada"]).status == 303
    job = upload(ada, "acme-2026-12.tar.gz", bundle)
    page = wait_for_verdict(ada, job)
    assert "<strong>Accepted</strong>" in page and "imported: acme:" in page, page
    assert "targets +1 -0" in page
    assert "<script" not in page  # over: no script, no refresh
    assert "script-src" not in ada.get(job).headers["Content-Security-Policy"]

    repos = ada.get("/repositories")
    row = re.search(r"<tr><td><code>fw/plc-x-2.1.0.bin</code></td>(.*?)</tr>", repos.text, re.S)
    assert row, repos.text
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[:4] == ["plc-x, plc-y", "2.1.0", str(len(b"firmware two" * 1000)), "targets"]
    assert re.match(r"\d{4}-\d\d-\d\dT", cells[4]), cells  # added when: the import's time
    history = ada.get("/imports")
    assert "ada (console)" in history.text and "fw/plc-x-2.1.0.bin" in history.text
    assert "acme-2026-12.tar.gz" in history.text  # the upload's list
    # the uploaded file is gone once the import is over; the job's record stays
    job_dir = home / "state/uploads" / job.rsplit("/", 1)[1]
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json"]
    assert not [p for p in (home / "state/uploads").iterdir() if p.name.startswith(".incoming")]
    record = json.loads((job_dir / "job.json").read_text())
    assert record["status"] == "accepted" and record["import_id"] >= 1


@pytest.mark.parametrize("case", ["unpinned", "not-an-archive", "tampered"])
def test_a_refused_upload_says_exactly_why_and_changes_nothing(served, case, tmp_path):
    home, base, sim, root = served
    if case == "unpinned":
        other = RepoSim("intruder")
        other.add_target("evil.bin", b"x" * 100)
        other.publish()
        data = tar_gz(other, tmp_path / "usb")
        reason = "the bundle holds repository &#39;intruder&#39;, which is not pinned on this appliance"
    elif case == "not-an-archive":
        data, reason = b"this is a text file, not a bundle\n" * 40, "is neither a folder, a .tar nor a .tar.gz"
    else:
        sim.publish()  # newer metadata than served, so that the timestamp is verified
        data = bytearray(tar_gz(sim, tmp_path / "usb"))
        with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        name = next(n for n in members if n.endswith("/timestamp.json"))
        # a year later than signed: the signature no longer holds
        members[name] = re.sub(rb'("expires":\s*")(\d{4})', lambda m: m.group(1) + str(int(m.group(2)) + 1).encode(),
                               members[name], count=1)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for n, content in members.items():
                info = tarfile.TarInfo(n)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        data, reason = out.getvalue(), "timestamp"
    before = sorted(p.name for p in (home / "public/repos/acme/metadata").iterdir())
    ada = Browser(base)
    ada.login("ada", PASSWORDS["ada"])
    page = wait_for_verdict(ada, upload(ada, f"{case}.tar.gz", data))
    assert "<strong>Refused</strong>" in page and "nothing was published" in page, page
    assert reason in page, page
    assert sorted(p.name for p in (home / "public/repos/acme/metadata").iterdir()) == before
    assert "refused" in ada.get("/imports").text


def test_who_may_see_and_upload(served):
    home, base, sim, root = served
    otto, aude = Browser(base), Browser(base)
    otto.login("otto", PASSWORDS["otto"])
    aude.login("aude", PASSWORDS["aude"])
    for path in ("/repositories", "/imports"):
        assert otto.get(path).status == 403
        answer = aude.get(path)
        assert answer.status == 200 and "Imports" in answer.text
    assert 'enctype="multipart/form-data"' not in aude.get("/imports").text  # no upload form for an auditor
    refused = aude.upload("/imports", {"csrf": aude.get("/overview").csrf}, "bundle", "b.tar", b"x" * 600)
    assert refused.status == 403 and "an auditor may not do this" in refused.text
    assert not [p for p in (home / "state/uploads").iterdir() if p.name.startswith(".incoming")]
    assert '/imports"' not in otto.get("/overview").text  # not in an operator's navigation


def test_the_admin_api_uploads_and_reports_the_job(served):
    home, base, sim, root = served
    raw = ApiClient(base)
    api = ApiClient(base, SpecChecker(raw.get("/api/v1/openapi.json").json))
    sim.add_target("fw/plc-x-3.0.0.bin", b"three" * 3000, version="3.0.0")
    sim.publish()
    bundle = tar_gz(sim, root / "usb-api")
    assert api.post("/api/v1/admin/imports", headers=basic("aude"), raw=bundle,
                    content_type="application/octet-stream").status == 403
    started = api.post("/api/v1/admin/imports?filename=acme-3.tar.gz", headers=basic("ada"), raw=bundle,
                       content_type="application/octet-stream")
    assert started.status == 202, started.body
    job = started.json
    assert job["operator"] == "ada (api)" and job["filename"] == "acme-3.tar.gz" and job["size"] == len(bundle)
    for _ in range(600):
        job = api.get(f"/api/v1/admin/imports/jobs/{job['id']}", headers=basic("aude")).json
        if job["state"] in ("finished", "failed"):
            break
        time.sleep(0.1)
    assert job["state"] == "finished" and job["status"] == "accepted", job
    history = api.get("/api/v1/admin/imports?limit=5", headers=basic("aude")).json["imports"]
    assert history[0]["id"] == job["import_id"] and history[0]["operator"] == "ada (api)"
    assert history[0]["repository"]["acme"]["targets_added"] == ["fw/plc-x-3.0.0.bin"]
    repos = api.get("/api/v1/admin/repositories", headers=basic("ada")).json["repositories"]
    target = next(t for t in repos[0]["targets"] if t["path"] == "fw/plc-x-3.0.0.bin")
    assert target["version"] == "3.0.0" and target["hardware"] == ["plc-x"] and target["added_at"]
    assert api.get("/api/v1/admin/imports", headers=basic("otto")).status == 403
    assert api.get("/api/v1/admin/imports/jobs/0123456789abcdef", headers=basic("ada")).status == 404
    form = api.post("/api/v1/admin/imports", headers=basic("ada"), raw=b"x", content_type="text/plain")
    assert form.status == 400 and "application/octet-stream" in form.json["message"]
    raw.close()
    api.close()


def test_the_job_page_without_a_verdict_polls_by_script_or_refreshes(console_home):
    """A job whose import has not finished: the page loads the progress script
    (the only page whose CSP allows the console's own script) and, for a
    browser without script, refreshes itself; an app built without an
    import runner refuses the import at once, saying how to import instead."""
    started: list[str] = []
    settings = load_settings(console_home, environ={})
    app = create_app(settings, import_runner=lambda s, job: started.append(job.id))
    client = app.test_client()
    from server.users import services
    from server.users.throttle import LoginThrottle

    session, cookie = services.login("ada", PASSWORDS["ada"], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    answer = client.post("/imports", data={"csrf": session.csrf, "bundle": (io.BytesIO(b"y" * 1000), "b.tar")},
                         content_type="multipart/form-data")
    assert answer.status_code == 303 and len(started) == 1, answer.get_data(as_text=True)
    page = client.get(answer.headers["Location"])
    text = page.get_data(as_text=True)
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in text
    assert '<script src="/console/static/import-progress.js" defer></script>' in text
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert client.get("/console/static/import-progress.js").status_code == 200
    progress = client.get(answer.headers["Location"] + "/progress")
    assert progress.json["state"] == "uploaded" and progress.json["size"] == 1000

    bare = create_app(settings)  # not started by `airlock serve`: no runner
    client = bare.test_client()
    client.set_cookie("airlock_session", cookie)
    answer = client.post("/imports", data={"csrf": session.csrf, "bundle": (io.BytesIO(b"y" * 1000), "b.tar")},
                         content_type="multipart/form-data")
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "<strong>Failed</strong>" in page and "airlock import" in page
    job = uploads.read_job(settings, answer.headers["Location"].rsplit("/", 1)[1])
    assert job.state == "failed" and not uploads.bundle_path(settings, job).exists()


def test_an_upload_over_the_cap_is_refused_before_it_is_stored(console_home):
    homedb.append_setting(console_home, "max_upload_bytes = 4096\n")
    settings = load_settings(console_home, environ={})
    app = create_app(settings, import_runner=lambda s, job: None)
    client = app.test_client()
    from server.users import services
    from server.users.throttle import LoginThrottle

    session, cookie = services.login("ada", PASSWORDS["ada"], LoginThrottle(), "test")
    client.set_cookie("airlock_session", cookie)
    answer = client.post("/imports", data={"csrf": session.csrf, "bundle": (io.BytesIO(b"y" * 10000), "b.tar")},
                         content_type="multipart/form-data")
    assert answer.status_code == 413, answer.get_data(as_text=True)
    assert "4096" in answer.get_data(as_text=True)
    folder = uploads.uploads_dir(settings)
    assert not folder.exists() or not list(folder.iterdir())
