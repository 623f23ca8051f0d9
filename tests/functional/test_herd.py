"""The herd at a small scale (tests/bench/herd_bench.py runs 50,000 devices):
a few hundred devices come back at once after a power cut, some enrolling,
every one checking in and polling the metadata against a real `airlock
serve` on SQLite; no check-in is lost and nothing answers 5xx."""

from tests.bench import herd_bench


def test_a_small_herd_loses_nothing(tmp_path):
    f = herd_bench.run(tmp_path, devices=300, window=3.0, new_share=0.1, seed=13)
    assert f.new == 30
    assert f.errors == [] and f.server_errors == 0
    assert f.statuses["enroll"] == {"200": 30}
    assert f.statuses["checkin"] == {"200": 300}
    assert f.statuses["poll"] == {"404": 300, "200": 300}  # the next root (none yet), then timestamp.json
    assert f.answered_checkins == f.stored_checkins == f.stored_checkins_sqlite == 300
    assert f.lost == 0
    # the CPU accounting found the appliance's processes and the client (the bench's cores-needed row)
    assert f.cpu[0] > 0 and f.cpu[1] > 0 and f.cpu[2] == 0  # SQLite: no database server
    assert [row[0].strip().split(":")[0] for row in herd_bench.cpu_rows(f)] == [
        "CPU per device", "cores needed at 100 devices/s (all three, at that cost)"]
