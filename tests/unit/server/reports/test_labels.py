"""QR labels, their keys and sheet, and the form's anti-forgery tokens."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import segno

from server.devices import services as devices
from server.reports import labels
from server.reports.exceptions import FormExpiredError, InvalidRequestError, NotFoundError
from server.reports.records import Label
from server.reports.sheet import render_svg
from server.settings import load_settings
from tests.functional.devices.client import SimDevice
from tests.support import homedb
from tests.unit.server.devices.conftest import accepted, request_for
from tests.unit.server.reports.conftest import counts

SVG = "{http://www.w3.org/2000/svg}"


def drawn_modules(d: str, size: int) -> set[tuple[int, int]]:
    """The dark modules (row, column) that segno's line path draws: ``M x y``
    and ``m dx dy`` move, ``h n`` draws n modules along row y - 0.5."""
    x = y = 0.0
    dark = set()
    for op, args in re.findall(r"([MmHh])([-0-9. ]+)", d):
        nums = [float(v) for v in args.split()]
        if op == "M":
            x, y = nums
        elif op == "m":
            x, y = x + nums[0], y + nums[1]
        else:
            for i in range(int(nums[0])):
                dark.add((int(y - 0.5), int(x) + i))
            x += nums[0]
    assert all(0 <= r < size and 0 <= c < size for r, c in dark)
    return dark


def test_labels_for_unlabelled_accepted_devices_then_by_id(settings, db, home):
    accepted(settings, SimDevice("plc-1"))
    accepted(settings, SimDevice("plc-2", hardware="plc-y"))
    devices.enroll(settings, request_for(SimDevice("pending-1")))
    first = labels.issue_labels(settings, [], "it")
    assert [(lb.device_id, lb.hardware) for lb in first] == [("plc-1", "plc-x"), ("plc-2", "plc-y")]
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/report/plc-1\?k=[A-Za-z0-9_-]{24}", first[0].url)
    assert labels.issue_labels(settings, [], "it") == []  # everyone has one now
    # only hashes are stored
    key = first[0].url.rsplit("k=", 1)[1]
    assert key not in homedb.all_text(home)
    again = labels.issue_labels(settings, ["plc-2", "pending-1", "plc-2"], "it")
    assert [lb.device_id for lb in again] == ["plc-2", "pending-1"] and again[0].url != first[1].url
    assert counts(home)["device_label"] == 3
    with pytest.raises(NotFoundError):
        labels.issue_labels(settings, ["nobody"], "it")


def test_public_url_and_bind(home, db):
    s = load_settings(home, overrides={"public_url": "https://airlock.plant.example/"}, environ={})
    accepted(s, SimDevice("plc:7"))
    (label,) = labels.issue_labels(s, [], "it")
    assert label.url.startswith("https://airlock.plant.example/report/plc:7?k=")
    everywhere = load_settings(home, overrides={"bind": "0.0.0.0:8080"}, environ={})
    with pytest.raises(InvalidRequestError, match="public_url"):
        labels.issue_labels(everywhere, ["plc:7"], "it")
    with pytest.raises(Exception, match="public_url"):
        load_settings(home, overrides={"public_url": "javascript:alert(1)"}, environ={})


def test_the_sheet_holds_segno_qr_codes_of_the_exact_urls():
    made = [Label("plc-1", "plc-x", "http://10.0.0.5:8080/report/plc-1?k=abcdefghijklmnopqrstuvwx"),
            Label("a<b&c", "m\"x", "http://10.0.0.5:8080/report/a%3Cb?k=ABCDEFGHIJKLMNOPQRSTUVWX"),
            Label("plc-3", "plc-x", "http://10.0.0.5:8080/report/plc-3?k=0123456789abcdefghijklmn")]
    text = render_svg(made)
    root = ET.fromstring(text.encode())  # well-formed, so every text was escaped
    groups = root.findall(f"{SVG}g")
    assert len(groups) == 3 and root.get("width") == "210mm"
    for group, label in zip(groups, made, strict=True):
        link = group.find(f"{SVG}a")
        assert link.get("href") == label.url
        printed = [t.text for t in group.findall(f"{SVG}text")]
        assert printed[0] == label.device_id and printed[1] == f"model {label.hardware}"
        assert "".join(t.text for t in group.findall(f"{SVG}text[@class='url']")) == label.url
        path = link.find(f"{SVG}svg/{SVG}path").get("d")
        qr = segno.make(label.url, error="m", micro=False)
        assert path == ET.fromstring(qr.svg_inline(scale=1, omitsize=True)).find("path").get("d")
        # the path draws exactly segno's module matrix for that URL (with a 4-module quiet zone)
        size = len(qr.matrix) + 8
        assert drawn_modules(path, size) == {(r + 4, c + 4) for r, row in enumerate(qr.matrix)
                                             for c, dark in enumerate(row) if dark}


def test_form_tokens(tmp_path):
    secret = labels.form_secret(tmp_path)
    assert labels.form_secret(tmp_path) == secret and len(secret) == 32
    assert oct((tmp_path / "form-secret").stat().st_mode & 0o777) == "0o600"
    token = labels.form_token(secret, "plc-1", "h" * 64, now=1000)
    labels.check_form_token(secret, "plc-1", "h" * 64, token, now=1000 + 60)
    for device, key_hash, tok, now in [
        ("plc-2", "h" * 64, token, 1060),  # another device
        ("plc-1", "g" * 64, token, 1060),  # a replaced label
        ("plc-1", "h" * 64, token, 1000 + labels.FORM_TOKEN_TTL + 1),  # too old
        ("plc-1", "h" * 64, token, 999 - 60),  # from the future
        ("plc-1", "h" * 64, None, 1060), ("plc-1", "h" * 64, "", 1060), ("plc-1", "h" * 64, "1000.00", 1060),
        ("plc-1", "h" * 64, labels.form_token(b"another secret", "plc-1", "h" * 64, now=1000), 1060),
    ]:
        with pytest.raises(FormExpiredError):
            labels.check_form_token(secret, device, key_hash, tok, now=now)
