"""The console in a real browser (Debian's chromium, driven by Playwright):
log in and out as each role, see the Overview with the role's name and
every page its navigation offers, a wrong password refused on the page; nothing loads from any other host, no script
runs, the Content-Security-Policy reports no violation, and the local style
sheet applies.  Every page is saved as a screenshot in the test's folder
(``screenshots/``) for review."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

from playwright import sync_api

from tests.functional.console.conftest import PASSWORDS, ROLE_OF
from tests.functional.reports.test_browser import ARGS, CHROMIUM
from tests.support.server import airlock_server


def test_log_in_and_out_as_each_role_in_a_browser(console_home, tmp_path):
    # a missing browser fails this test, never skips it: `make test` installs it
    assert shutil.which(CHROMIUM), "needs Debian's chromium: run `sh tests/prereqs.sh` as root (`make test` does)"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with airlock_server(console_home, workers=2, threads=4) as base, sync_api.sync_playwright() as pw:
        host = urlsplit(base).netloc
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for name, role in ROLE_OF.items():
                requests, console = [], []
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.on("request", lambda r, requests=requests: requests.append(r.url))
                page.on("console", lambda m, console=console: console.append(m.text))
                assert page.goto(base + "/").status == 200
                assert page.locator("h1").inner_text() == "Log in"
                page.screenshot(path=shots / f"login-{role}.png", full_page=True)

                page.fill("#username", name)
                page.fill("#password", "certainly not the password")
                with page.expect_navigation():
                    page.click("button[type=submit]")
                assert page.locator("[role=alert]").inner_text() == "Wrong user name or password."
                page.screenshot(path=shots / f"login-refused-{role}.png", full_page=True)

                page.fill("#password", PASSWORDS[name])
                with page.expect_navigation():
                    page.click("button[type=submit]")
                assert urlsplit(page.url).path == "/overview"
                assert page.locator("h1").inner_text() == "Overview"
                assert page.locator(".who .role").inner_text() == role
                assert page.locator("#devices-online dd").inner_text() == "0"
                # the style sheet applied, and nothing ran
                assert page.evaluate("getComputedStyle(document.querySelector('.bar')).display") == "flex"
                assert page.evaluate("document.scripts.length") == 0
                assert page.evaluate("document.cookie") == ""  # HttpOnly: no script could read the session
                page.screenshot(path=shots / f"overview-{role}.png", full_page=True)
                offered = page.eval_on_selector_all(".bar nav a", "links => links.map(a => a.textContent)")
                for label in offered[1:]:  # every page the role's navigation offers
                    with page.expect_navigation():
                        page.click(f".bar nav a:text-is('{label}')")
                    assert page.locator("h1").inner_text() == label
                    page.screenshot(path=shots / f"{label.lower().replace(' ', '-')}-{role}.png", full_page=True)
                assert offered == (["Overview", "Alerts", "Devices", "Reports", "Releases", "Rollouts"]
                                   if role == "operator" else
                                   ["Overview", "Alerts", "Devices", "Reports", "Releases", "Rollouts", "Repositories",
                                    "Imports", "Exports", "Trust", "Users", "Audit log"])

                with page.expect_navigation():
                    page.click(".who button[type=submit]")
                assert urlsplit(page.url).path == "/" and page.locator("h1").inner_text() == "Log in"
                page.goto(base + "/overview")  # the session is gone: back to the form
                assert urlsplit(page.url).path == "/" and page.locator("h1").inner_text() == "Log in"
                context.close()
                assert requests and all(urlsplit(u).netloc == host for u in requests), requests
                assert not [m for m in console if "Content Security Policy" in m], console
        finally:
            browser.close()
    kinds = ("login", "login-refused", "overview", "alerts", "devices", "reports", "releases", "rollouts")
    assert sorted(p.name for p in shots.iterdir()) == sorted(
        [f"{kind}-{role}.png" for role in ROLE_OF.values() for kind in kinds]
        + [f"{kind}-{role}.png" for role in ("admin", "auditor")
           for kind in ("audit-log", "repositories", "imports", "exports", "trust", "users")])
