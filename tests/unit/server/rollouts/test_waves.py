"""Wave lists and wave membership: pure functions."""

from __future__ import annotations

import pytest

from server.rollouts.exceptions import RolloutArgumentError
from server.rollouts.waves import bucket, parse_waves, wave_of


def test_waves_parse_percentages_and_groups():
    assert parse_waves(["group:line3", "10%", "50", "100%"]) == [
        {"group": "line3"}, {"percent": 10.0}, {"percent": 50.0}, {"percent": 100.0}]


@pytest.mark.parametrize("waves, message", [
    ([], "give the waves"),
    (["50%", "10%"], "cumulative"),
    (["0%"], "above 0"),
    (["101%"], "above 0 and at most 100"),
    (["group:bad tag"], "not a group tag"),
    (["ten"], "neither a percentage"),
    (["1%"] * 21, "at most 20"),
])
def test_bad_wave_lists_are_refused_with_what_to_fix(waves, message):
    with pytest.raises(RolloutArgumentError, match=message):
        parse_waves(waves)


def test_a_device_stays_in_its_wave_and_rollouts_shuffle_the_order():
    assert bucket(7, "dev-1") == bucket(7, "dev-1")
    firsts = {r: {d for d in range(200) if bucket(r, f"dev-{d}") < 10} for r in (1, 2)}
    assert firsts[1] != firsts[2]
    waves = parse_waves(["10%", "50%", "100%"])
    sizes = [sum(1 for d in range(2000) if wave_of(waves, 3, f"dev-{d}", set()) == n) for n in (1, 2, 3)]
    assert sum(sizes) == 2000
    # about 10%, 40%, 50% (binomial: far outside these bounds means the hash is broken)
    assert 140 < sizes[0] < 260 and 680 < sizes[1] < 920 and 880 < sizes[2] < 1120


def test_group_waves_come_first_and_a_device_no_wave_takes_has_none():
    waves = parse_waves(["group:line3", "group:line4"])
    assert wave_of(waves, 1, "a", {"line4", "line3"}) == 1
    assert wave_of(waves, 1, "a", {"line4"}) == 2
    assert wave_of(waves, 1, "a", {"other"}) is None
