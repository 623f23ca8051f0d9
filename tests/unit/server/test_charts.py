"""The console's SVG charts: well-formed SVG, no script and no inline style
(the Content-Security-Policy forbids both), every label escaped, and the
numbers drawn where they belong."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from server.console import charts

SVG = "{http://www.w3.org/2000/svg}"


def parsed(markup) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == SVG + "svg"
    for element in root.iter():
        assert element.tag != SVG + "script" and "style" not in element.attrib
        assert not any(k.startswith("on") for k in element.attrib)
    return root


def test_bars_scale_to_the_largest_and_escape_labels():
    root = parsed(charts.bars([("plc-x 1.0.0", 4), ("<script>alert(1)</script>\u202e", 2)], "by version"))
    rects = root.findall(f".//{SVG}rect")
    assert [r.find(f"{SVG}title").text for r in rects] == ["plc-x 1.0.0: 4", "<script>alert(1)</script>\\u202e: 2"]
    assert int(rects[0].get("width")) == 2 * int(rects[1].get("width"))
    assert "<script>" not in str(charts.bars([("<script>", 1)], "t"))
    assert "nothing to show yet" in str(charts.bars([], "t"))


def test_stacked_days_put_failures_on_successes():
    root = parsed(charts.stacked_days([("2026-12-01", 3, 1), ("2026-12-02", 0, 0)], "updates", ("ok", "bad")))
    rects = [r for r in root.findall(f".//{SVG}rect") if r.find(f"{SVG}title") is not None]
    first_ok, first_bad = rects[0], rects[1]
    assert first_ok.find(f"{SVG}title").text == "2026-12-01: 3 ok"
    assert first_bad.find(f"{SVG}title").text == "2026-12-01: 1 bad"
    assert float(first_ok.get("height")) == 3 * float(first_bad.get("height"))
    assert float(first_bad.get("y")) + float(first_bad.get("height")) == float(first_ok.get("y"))
    assert float(rects[2].get("height")) == 0


def test_lines_one_panel_per_metric_with_its_range():
    root = parsed(charts.lines({"cpu_temp_c": [40.0, 55.5, 50.0], "uptime_s": [10.0]}, "metrics"))
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 2 and len(lines[0].get("points").split()) == 3
    texts = [t.text for t in root.findall(f".//{SVG}text")]
    assert "40 to 55.5, 3 samples" in texts and "cpu_temp_c" in texts
    assert "no metrics reported yet" in str(charts.lines({}, "t"))
