"""QR labels and the report form against a real `airlock serve`: the label
sheet's URL and QR code, the form's key, anti-forgery token and headers, a
report stored with the device's state, and report text shown as text."""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from html import unescape
from urllib.parse import urlsplit

import pytest
import segno

from tests.functional.devices.client import report

SVG = "{http://www.w3.org/2000/svg}"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def label_url(appliance, device_id: str, tmp_path) -> str:
    out = tmp_path / f"{device_id}-{uuid.uuid4().hex[:6]}.svg"
    r = appliance.airlock("devices", "labels", device_id, "--out", out)
    assert r.code == 0, r.err
    group = ET.parse(out).getroot().find(f"{SVG}g[@data-device='{device_id}']")
    url = group.find(f"{SVG}a").get("href")
    assert "".join(t.text for t in group.findall(f"{SVG}text[@class='url']")) == url
    drawn = group.find(f"{SVG}a/{SVG}svg/{SVG}path").get("d")
    assert drawn == ET.fromstring(segno.make(url, error="m", micro=False).svg_inline(scale=1, omitsize=True)) \
        .find("path").get("d")
    return url


def form_fields(html: str) -> dict:
    return {name: unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture(scope="module")
def labelled(appliance, tmp_path_factory):
    """A device that checked in, installed an update, and has a label."""
    dev, api = appliance.enroll("form-1"), appliance.client()
    approved = appliance.airlock("releases", "approve", "acme", "plc-x/fw-2.0.0.bin", "--hardware", "plc-x")
    release_id = int(approved.out.split()[1].rstrip(":"))
    assert api.post("/api/v1/checkin", {"firmware": "1.0.0", "metrics": {"uptime_s": 7, "cpu_temp_c": 72.5}},
                    dev.auth()).status == 200
    assert api.post("/api/v1/updates", report(release_id, "failure", "flash verify failed"), dev.auth()).status == 200
    return label_url(appliance, "form-1", tmp_path_factory.mktemp("labels"))


def test_label_form_and_report_with_snapshot(appliance, labelled):
    assert labelled.startswith(appliance.base + "/report/form-1?k=")
    api = appliance.client()
    page = api.get(path_of(labelled))
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    html = page.body.decode()
    assert "form-1" in html and "plc-x" in html and "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from elsewhere
    fields = form_fields(html)
    assert set(fields) == {"k", "csrf"}

    r = appliance.post_form("/report/form-1", {**fields, "problem": "Valve 3 does not close\nsince 10:00",
                                               "urgency": "critical", "reporter": "Badge 0815"},
                            {"Origin": appliance.base})
    assert r.status == 200 and "Thank you" in r.body.decode()
    number = int(re.search(r"<strong>#(\d+)</strong>", r.body.decode()).group(1))
    shown = json.loads(appliance.airlock("reports", "show", str(number), "--json").out)
    assert shown["summary"]["source"] == "operator" and shown["summary"]["severity"] == "critical"
    assert shown["reporter"] == "Badge 0815" and shown["summary"]["message"] == "Valve 3 does not close\nsince 10:00"
    snap = shown["snapshot"]
    assert snap["firmware"] == "1.0.0" and snap["last_checkin"] and snap["metrics"]["cpu_temp_c"] == 72.5
    assert snap["recent_metrics"][0]["values"]["uptime_s"] == 7
    assert snap["last_update"]["step"] == "failure" and snap["last_update"]["version"] == "2.0.0"
    assert "update_failed" in snap["health"]


def test_wrong_or_missing_key_and_forged_posts_store_nothing(appliance, labelled):
    api = appliance.client()
    key = labelled.rsplit("k=", 1)[1]
    fields = form_fields(api.get(path_of(labelled)).body.decode())
    for path in ("/report/form-1", "/report/form-1?k=", "/report/form-1?k=" + "A" * 24, f"/report/nobody?k={key}"):
        r = api.get(path)
        assert r.status == 404 and "csrf" not in r.body.decode(), path
    before = appliance.stored()
    good = {"problem": "broken", "urgency": "info", "reporter": "Ann"}
    refused = [
        ({**good, "csrf": fields["csrf"]}, None, 404),  # no key
        ({**good, "k": "A" * 24, "csrf": fields["csrf"]}, None, 404),
        ({**good, "k": key}, None, 403),  # no anti-forgery token
        ({**good, "k": key, "csrf": "1700000000." + "0" * 64}, None, 403),
        ({**good, **fields}, {"Origin": "http://evil.example"}, 403),
        ({**good, **fields}, {"Sec-Fetch-Site": "cross-site"}, 403),
    ]
    for body, headers, status in refused:
        r = appliance.post_form("/report/form-1", body, headers)
        assert r.status == status, (body, headers, r.body[:200])
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert appliance.post_form("/report/nobody", {**good, **fields}).status == 404
    r = appliance.post_form("/report/form-1", {**fields, "problem": "", "urgency": "info", "reporter": "Ann"})
    assert r.status == 400 and "Please check the form" in r.body.decode() and form_fields(r.body.decode())["csrf"]
    r = appliance.post_form("/report/form-1", {**fields, "problem": "x" * 20000, "urgency": "info", "reporter": "A"})
    assert r.status == 413
    assert appliance.stored() == before


def test_report_text_is_shown_as_text(appliance, tmp_path):
    appliance.enroll("form-xss")
    url = label_url(appliance, "form-xss", tmp_path)
    fields = form_fields(appliance.client().get(path_of(url)).body.decode())
    r = appliance.post_form("/report/form-xss", {**fields, "problem": XSS, "urgency": "warning", "reporter": XSS})
    html = r.body.decode()
    assert r.status == 200 and "<script>" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") == 2
    # a failed submission re-shows what was typed, escaped as well
    r = appliance.post_form("/report/form-xss", {**fields, "problem": XSS, "urgency": "bogus", "reporter": XSS})
    assert r.status == 400 and "<script>" not in r.body.decode()


def test_form_rate_limit_per_label(appliance, tmp_path):
    appliance.enroll("form-rate")
    url = label_url(appliance, "form-rate", tmp_path)
    fields = form_fields(appliance.client().get(path_of(url)).body.decode())
    for i in range(4):
        body = {**fields, "problem": f"again {i}", "urgency": "info", "reporter": "Ann"}
        assert appliance.post_form("/report/form-rate", body).status == 200
    # the same form sent twice (a double tap, a reload) is filed once
    assert appliance.post_form("/report/form-rate", body).status == 200
    assert appliance.rows("SELECT COUNT(*) FROM report WHERE message LIKE 'again%'")[0][0] == 4
    before = appliance.stored()
    r = appliance.post_form("/report/form-rate", {**body, "problem": "one more"})
    assert r.status == 429 and int(r.headers["retry-after"]) > 0 and "Too many reports" in r.body.decode()
    assert appliance.stored() == before
