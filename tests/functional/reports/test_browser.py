"""The label form in a real browser (Debian's chromium, driven by
Playwright): open the label's URL, fill the form, submit, see the
confirmation; the page loads nothing from any host but the appliance, and
the Content-Security-Policy reports no violation."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

from playwright import sync_api

from tests.functional.reports.test_form import XSS, label_url

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def test_operator_files_a_report_from_a_tablet(appliance, tmp_path):
    # a missing browser fails this test, never skips it: `make test` installs it
    assert shutil.which(CHROMIUM), "needs Debian's chromium: run `sh tests/prereqs.sh` as root (`make test` does)"
    appliance.enroll("tablet-1")
    url = label_url(appliance, "tablet-1", tmp_path)
    appliance_host = urlsplit(appliance.base).netloc
    requests, console, dialogs = [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: console.append(m.text))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            assert page.goto(url).status == 200
            assert page.locator("h1").inner_text() == "Report a problem"
            page.fill("#problem", "Conveyor stops every few minutes\n" + XSS)
            page.check("input[name=urgency][value=critical]")
            page.fill("#reporter", "Badge 4711")
            with page.expect_navigation():
                page.click("button[type=submit]")
            assert page.locator("h1").inner_text() == "Thank you"
            assert "tablet-1" in page.locator(".ok").inner_text()
            assert XSS in page.locator(".text").inner_text()  # shown as text ...
            assert page.evaluate("document.querySelectorAll('script, img').length") == 0  # ... never as markup
            # the inline style sheet is allowed by its hash and applied
            assert page.evaluate("getComputedStyle(document.querySelector('.ok')).borderTopStyle") == "solid"
        finally:
            browser.close()
    assert requests and all(urlsplit(u).netloc == appliance_host for u in requests), requests
    assert not dialogs and not [m for m in console if "Content Security Policy" in m], console
    shown = appliance.airlock("reports", "list", "--device", "tablet-1", "--json")
    assert '"severity": "critical"' in shown.out and "Conveyor stops" in shown.out
