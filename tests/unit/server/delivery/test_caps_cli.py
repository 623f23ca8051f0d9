"""`airlock download-caps`: set, list, refuse what cannot work (changing
nothing), clear; audited.  The appliance's own caps are settings, checked
at start-up."""

from __future__ import annotations

import json

from tests.support import homedb
from tests.support.homedb import append_setting


def test_download_caps_cli(airlock, home):
    r = airlock("download-caps", "set", "line-3", "--downloads", "5", "--bandwidth", "500000")
    assert r.code == 0 and "at most 5 concurrent downloads sharing 500000 bytes/s" in r.out, r.err
    for args, message in [(("--downloads", "0"), "at least 1"), (("--downloads", "2", "--bandwidth", "10"), "1024"),
                          (("--downloads", "20000"), "0 (no cap) to 10000")]:
        bad = airlock("download-caps", "set", "line-3", *args)
        assert bad.code != 0 and message in bad.err and len(bad.err.strip().splitlines()) == 1, bad.err
    assert airlock("download-caps", "set", "bad/name", "--downloads", "1").code != 0
    shown = json.loads(airlock("download-caps", "list", "--json").out)
    assert shown["appliance"] == {"max_downloads": 0, "max_bytes_per_second": 0}
    assert [(g["group"], g["max_downloads"], g["max_bytes_per_second"]) for g in shown["groups"]] == [
        ("line-3", 5, 500000)]
    assert "line-3" in airlock("download-caps", "list").out
    assert airlock("download-caps", "clear", "line-3").code == 0
    gone = airlock("download-caps", "clear", "line-3")
    assert gone.code != 0 and "has no download cap" in gone.err
    actions = [a for (a,) in homedb.rows(home, "SELECT action FROM audit_log WHERE action LIKE 'download_cap.%'")]
    assert actions == ["download_cap.set", "download_cap.clear"]


def test_a_bandwidth_cap_needs_a_download_cap(airlock, home):
    append_setting(home, "download_max_bytes_per_second = 1000000\n")
    r = airlock("download-caps", "list")
    assert r.code != 0 and "set download_max_concurrent too" in r.err
    append_setting(home, "download_max_concurrent = 10\n")
    assert "(appliance)  10" in airlock("download-caps", "list").out
