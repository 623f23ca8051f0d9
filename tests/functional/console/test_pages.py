"""The console's Devices and Audit log pages on a real `airlock serve`, with
a real fleet: filters and pages, what each role's navigation offers and
is refused, the chain check, and hostile text shown as inert, visible
escapes."""

from __future__ import annotations

import re

import pytest

from tests.functional.console.browser import Browser
from tests.functional.console.conftest import PASSWORDS


def logged_in(fleet, name: str) -> Browser:
    browser = Browser(fleet.base)
    assert browser.login(name, PASSWORDS[name]).status == 303
    return browser


def rows(page) -> list[str]:
    table = re.search(r'<table id="device-list">.*?<tbody>(.*?)</tbody>', page.text, re.S).group(1)
    return re.findall(r'<tr><td><a href="/devices/[^"]+">([^<]+)</a></td>', table)


def nav(page) -> list[str]:
    return re.findall(r'<a href="(/[a-z]+)"', re.search(r"<nav>(.*?)</nav>", page.text, re.S).group(1))


EVERY_PAGE = ["/overview", "/alerts", "/devices", "/reports", "/releases", "/rollouts", "/repositories", "/imports",
              "/exports", "/trust", "/users", "/audit"]


@pytest.mark.parametrize("name, links", [
    ("ada", EVERY_PAGE),
    ("otto", ["/overview", "/alerts", "/devices", "/reports", "/releases", "/rollouts"]),
    ("aude", EVERY_PAGE),
])
def test_each_role_is_offered_only_what_it_may_open(fleet, name, links):
    browser = logged_in(fleet, name)
    assert nav(browser.get("/overview")) == links
    audit = browser.get("/audit")
    if "/audit" in links:
        assert audit.status == 200
    else:
        assert audit.status == 403 and "an operator may not do this: ask an admin" in audit.text
        assert nav(audit) == links  # the refusal is a console page, with the user's own navigation


def test_device_list_filters_and_pages(fleet):
    browser = logged_in(fleet, "otto")
    page = browser.get("/devices")
    assert page.status == 200 and 'id="total">12 devices, page 1 of 1' in page.text
    assert rows(page)[:2] == ["gw-00", "gw-01"]
    # a filter form sends every field, the empty ones too: they mean "any"
    page = browser.get("/devices?state=pending&hardware=&tag=&firmware=&flag=&prefix=&sort=-device_id")
    assert rows(page) == ["plc-07", "plc-06", "gw-03", "gw-02", "gw-01"]
    assert '<option value="pending" selected>' in page.text
    page = browser.get("/devices?state=accepted&per_page=4")
    assert rows(page) == ["plc-00", "plc-01", "plc-02", "plc-03"] and "page 1 of 2" in page.text
    following = re.search(r'<a href="([^"]+)" rel="next">', page.text).group(1).replace("&amp;", "&")
    page = browser.get(following)
    assert rows(page) == ["plc-04", "plc-05"] and "page 2 of 2" in page.text and 'rel="next"' not in page.text
    refused = browser.get("/devices?state=lost")
    assert refused.status == 400 and "query parameter state" in refused.text
    assert "Traceback" not in refused.text


def test_audit_log_page_filters_verifies_and_shows_hostile_names_inert(fleet):
    hostile = "mallory\u202eexe.\x1b[2J"
    assert Browser(fleet.base).login(hostile, "wrong password here").status == 401
    browser = logged_in(fleet, "aude")
    page = browser.get("/audit?action=user.login_failed&actor=&subject=")
    assert page.status == 200
    # stored escaped (the audit log is exported), shown escaped again: visible, never a reordered line
    assert re.search(r"<td>mallory\\+u202eexe\.\\+x1b\[2J</td>", page.text)
    assert "\u202e" not in page.text and "\x1b" not in page.text
    accepts = browser.get("/audit?action=device.accept")
    assert accepts.text.count("<td>device.accept</td>") == 6
    assert 'id="chain"' not in accepts.text
    checked = browser.get("/audit?verify=1")
    assert re.search(r'<p class="ok" id="chain" role="status">\d+ records, chain intact', checked.text)


def test_an_operator_triages_a_report_and_an_auditor_only_reads_it(fleet):
    otto, aude = logged_in(fleet, "otto"), logged_in(fleet, "aude")
    listing = otto.get("/reports?status=new&device=plc-00")
    number = re.search(r'<a href="/reports/(\d+)">', listing.text).group(1)
    assert "hard fault in task modbus" in listing.text
    page = otto.get(f"/reports/{number}")
    assert 'id="status">new' in page.text and "PC=0x0800_1234" in page.text
    assert "Acknowledge" in page.text and 'id="snapshot"' in page.text
    r = otto.post(f"/reports/{number}/acknowledge", {"csrf": page.csrf, "text": "on it, <b>now</b>"})
    assert r.status == 303 and r.headers["Location"] == f"/reports/{number}"
    page = otto.get(f"/reports/{number}")
    assert 'id="status">acknowledged (by otto (console)' in page.text
    assert "on it, &lt;b&gt;now&lt;/b&gt;" in page.text  # a note is text, never markup
    again = otto.post(f"/reports/{number}/acknowledge", {"csrf": page.csrf})
    assert again.status == 409 and "only a report that is new can be acknowledged" in again.text
    assert otto.post(f"/reports/{number}/note", {"csrf": page.csrf, "text": " "}).status == 400
    assert otto.post(f"/reports/{number}/resolve", {"csrf": page.csrf}).status == 303
    assert otto.post(f"/reports/{number}/reopen", {"csrf": page.csrf, "text": "back again"}).status == 303
    assert 'id="status">new' in otto.get(f"/reports/{number}").text

    seen = aude.get(f"/reports/{number}")
    assert seen.status == 200 and "reopened" in seen.text and "Acknowledge" not in seen.text
    refused = aude.post(f"/reports/{number}/acknowledge", {"csrf": seen.csrf})
    assert refused.status == 403 and "an auditor may not do this" in refused.text
    assert 'id="status">new' in aude.get(f"/reports/{number}").text
    trail = aude.get(f"/audit?action=report.&subject=report+{number}")
    assert re.findall(r"<td>(report\.\w+)</td>", trail.text) == [
        "report.acknowledged", "report.resolved", "report.reopened"]
    assert otto.get("/reports?status=lost").status == 400
    assert otto.get("/reports/99999").status == 404


def test_an_admin_accepts_a_device_on_its_page_and_others_may_only_look(fleet):
    # last in this module: it adds a device to the fleet the tests above count
    from tests.functional.devices.client import SimDevice

    kiosk = SimDevice("kiosk-01", hardware="panel-7")
    assert fleet.api.post("/api/v1/enroll", kiosk.enrollment()).status == 202
    ada, otto = logged_in(fleet, "ada"), logged_in(fleet, "otto")
    listed = ada.get("/devices?prefix=kiosk")
    assert rows(listed) == ["kiosk-01"] and 'href="/devices/kiosk-01"' in listed.text
    seen = otto.get("/devices/kiosk-01")
    assert seen.status == 200 and 'id="state">pending' in seen.text and "Accept</button>" not in seen.text
    assert otto.post("/devices/kiosk-01/accept", {"csrf": seen.csrf}).status == 403
    page = ada.get("/devices/kiosk-01")
    assert "Accept</button>" in page.text and "Decommission</button>" not in page.text
    r = ada.post("/devices/kiosk-01/accept", {"csrf": page.csrf, "reason": "new panel in hall B"})
    assert r.status == 303 and r.headers["Location"] == "/devices/kiosk-01"
    page = ada.get("/devices/kiosk-01")
    assert 'id="state">accepted (offline)' in page.text and "by ada (console): new panel in hall B" in page.text
    assert "Decommission</button>" in page.text
    assert fleet.api.post("/api/v1/enroll", kiosk.enrollment()).status == 200  # the device now gets its token
    trail = ada.get("/audit?action=device.accept&subject=kiosk-01")
    assert "<td>ada (console)</td>" in trail.text
    assert ada.get("/devices/no-such-device").status == 404
    assert ada.post("/devices/kiosk-01/explode", {"csrf": page.csrf}).status == 404
