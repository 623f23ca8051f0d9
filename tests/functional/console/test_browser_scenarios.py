"""The console's admin work in a real browser (Debian's chromium, driven by
Playwright) against a real `airlock serve`: upload a bundle through the
file input and watch the import page reach its verdict by itself (the
progress script polls; accepted, then a refused bundle with its reason);
approve a release and withdraw it; accept a pending device; an auditor's
forged change refused; an operator on a tablet filing a report from a QR
label's URL and acknowledging it in the console.  No Content-Security-Policy violation anywhere.
Screenshots of each page go to the test's ``screenshots/`` folder."""

from __future__ import annotations

import shutil
import tarfile
from types import SimpleNamespace
from urllib.parse import urlsplit

from playwright import sync_api

from tests.conftest import run_airlock
from tests.functional.console.conftest import PASSWORDS
from tests.functional.console.test_imports import pin
from tests.functional.devices.client import ApiClient, SimDevice
from tests.functional.reports.test_browser import ARGS, CHROMIUM
from tests.functional.reports.test_form import label_url
from tests.support import homedb
from tests.support.server import airlock_server
from tests.support.simulator import RepoSim

VERDICT_WAIT = 60_000  # ms: the import page must reach its verdict by itself within this


def bundle_file(sim: RepoSim, folder, name: str) -> str:
    media = sim.write_bundle(folder / "media")
    path = folder / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(media / "airlock", arcname="airlock")
    return str(path)


def log_in(page, base: str, name: str) -> None:
    page.goto(base + "/")
    page.fill("#username", name)
    page.fill("#password", PASSWORDS[name])
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Overview"


def test_admin_work_in_a_browser(console_home, tmp_path):
    assert shutil.which(CHROMIUM), "needs Debian's chromium: run `sh tests/prereqs.sh` as root (`make test` does)"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    sim = RepoSim("acme")
    pin(console_home, sim, tmp_path)
    sim.add_target("fw/plc-x-2.1.0.bin", b"firmware" * 20000, version="2.1.0")
    sim.publish()
    good = bundle_file(sim, tmp_path / "good", "acme-2.1.0.tar.gz")
    (tmp_path / "bad").mkdir()
    bad = tmp_path / "bad" / "notes.tar.gz"
    bad.write_bytes(b"not a bundle at all\n" * 100)
    with airlock_server(console_home, workers=2, threads=4) as base, sync_api.sync_playwright() as pw:
        api = ApiClient(base)
        device = SimDevice("plc-77")
        assert api.post("/api/v1/enroll", device.enrollment()).status == 202
        api.close()
        host = urlsplit(base).netloc
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            requests, console = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console.append(m.text))
            log_in(page, base, "ada")

            # upload: accepted, the page reaching its verdict by itself
            page.goto(base + "/imports")
            page.screenshot(path=shots / "imports-admin.png", full_page=True)
            page.set_input_files("input[name=bundle]", good)
            with page.expect_navigation():
                page.click("#upload button[type=submit]")
            first_state = page.locator("#job").get_attribute("data-state")
            if first_state not in ("finished", "failed"):
                page.screenshot(path=shots / "import-running.png", full_page=True)
            page.wait_for_selector("#verdict", timeout=VERDICT_WAIT)
            assert page.locator("#verdict strong").inner_text() == "Accepted"
            assert "imported: acme:" in page.locator("#report").inner_text()
            if first_state not in ("finished", "failed"):
                assert any("/progress" in u for u in requests), "the progress script never polled"
            page.screenshot(path=shots / "import-accepted.png", full_page=True)

            # upload: refused, with the importer's exact reason
            page.goto(base + "/imports")
            page.set_input_files("input[name=bundle]", str(bad))
            with page.expect_navigation():
                page.click("#upload button[type=submit]")
            page.wait_for_selector("#verdict", timeout=VERDICT_WAIT)
            assert page.locator("#verdict strong").inner_text() == "Refused"
            assert "neither a folder, a .tar nor a .tar.gz archive" in page.locator("#report").inner_text()
            page.screenshot(path=shots / "import-refused.png", full_page=True)

            page.goto(base + "/repositories")
            assert "fw/plc-x-2.1.0.bin" in page.locator("table.targets").inner_text()
            page.screenshot(path=shots / "repositories-admin.png", full_page=True)
            page.goto(base + "/trust/acme")
            page.screenshot(path=shots / "trust-admin.png", full_page=True)

            # approve a release for the model, then withdraw it
            page.goto(base + "/releases")
            page.select_option("select[name=target]", "acme fw/plc-x-2.1.0.bin")
            page.fill("input[name=hardware]", "plc-x")
            with page.expect_navigation():
                page.click("#approve button[type=submit]")
            row = page.locator("tr[data-release='1']")
            assert "model plc-x" in row.inner_text() and "offered" in row.inner_text()
            page.screenshot(path=shots / "releases-admin.png", full_page=True)
            with page.expect_navigation():
                row.locator("button", has_text="Withdraw").click()
            assert page.locator("tr[data-release='1']").count() == 0
            page.goto(base + "/releases?all=1")
            assert "withdrawn" in page.locator("tr[data-release='1']").inner_text()

            # accept the pending device
            page.goto(base + "/devices/plc-77")
            assert page.locator("#state").inner_text().startswith("pending")
            with page.expect_navigation():
                page.click("button:text-is('Accept')")
            assert page.locator("#state").inner_text().startswith("accepted")
            page.screenshot(path=shots / "device-accepted.png", full_page=True)
            page.goto(base + "/users")
            page.screenshot(path=shots / "users-admin.png", full_page=True)
            context.close()

            # an auditor sees no form to change anything, and a forged one is refused
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: console.append(m.text))
            log_in(page, base, "aude")
            page.goto(base + "/releases?all=1")
            assert page.locator("#approve").count() == 0 and page.locator("button", has_text="Withdraw").count() == 0
            csrf = page.locator("input[name=csrf]").first.get_attribute("value")
            refused = context.request.post(base + "/releases", form={
                "csrf": csrf, "target": "acme fw/plc-x-2.1.0.bin", "hardware": "plc-x"}, max_redirects=0)
            assert refused.status == 403 and "an auditor may not do this" in refused.text()
            page.goto(base + "/releases?all=1")
            assert page.locator("tr[data-release='2']").count() == 0  # nothing was approved
            page.screenshot(path=shots / "releases-auditor.png", full_page=True)
            context.close()
        finally:
            browser.close()
    assert all(urlsplit(u).netloc == host for u in requests), requests
    assert not [m for m in console if "Content Security Policy" in m], console
    assert (shots / "import-accepted.png").exists() and (shots / "import-refused.png").exists()


def test_operator_files_a_report_from_a_label_on_a_tablet_and_triages_it(console_home, tmp_path):
    """The QR label's URL opened on a tablet-sized screen: the operator files
    the problem, then logs into the console on the same tablet, finds the
    report in the triage queue and acknowledges it."""
    assert shutil.which(CHROMIUM), "needs Debian's chromium: run `sh tests/prereqs.sh` as root (`make test` does)"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with airlock_server(console_home, workers=2, threads=4) as base, sync_api.sync_playwright() as pw:
        homedb.append_setting(console_home, f'public_url = "{base}"\n')  # labels point where we reach it
        api = ApiClient(base)
        assert api.post("/api/v1/enroll", SimDevice("press-3").enrollment()).status == 202
        api.close()
        assert run_airlock(console_home, "devices", "accept", "press-3").code == 0
        url = label_url(SimpleNamespace(airlock=lambda *a: run_airlock(console_home, *a)), "press-3", tmp_path)
        host = urlsplit(base).netloc
        console: list[str] = []
        requests: list[str] = []
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 820, "height": 1180}, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.on("console", lambda m: console.append(m.text))
            page.on("request", lambda r: requests.append(r.url))
            assert page.goto(url).status == 200
            assert page.locator("h1").inner_text() == "Report a problem"
            page.fill("#problem", "Press 3 hydraulic pressure drops after each cycle")
            page.check("input[name=urgency][value=critical]")
            page.fill("#reporter", "Shift B, badge 2210")
            page.screenshot(path=shots / "label-form-tablet.png", full_page=True)
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "Thank you"

            log_in(page, base, "otto")
            page.goto(base + "/reports?status=new&device=press-3")
            row = page.locator("#report-list tbody tr").first
            assert "hydraulic pressure" in row.inner_text()
            page.screenshot(path=shots / "reports-operator-tablet.png", full_page=True)
            with page.expect_navigation():
                row.locator("a").first.click()
            with page.expect_navigation():
                page.click("button:text-is('Acknowledge')")
            assert "acknowledged" in page.locator("main").inner_text()
            page.screenshot(path=shots / "report-acknowledged-tablet.png", full_page=True)
            context.close()
        finally:
            browser.close()
    assert all(urlsplit(u).netloc == host for u in requests), requests
    assert not [m for m in console if "Content Security Policy" in m], console
