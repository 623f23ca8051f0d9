"""Whether a maintenance window is open at an instant: wall-clock time in
an IANA zone, across midnight and both daylight-saving changes of
Europe/Berlin (2026: clocks go 02:00 -> 03:00 on Sunday 29 March, and
03:00 -> 02:00 on Sunday 25 October)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.delivery.windows import is_open, parse_days, zone
from server.devices.exceptions import InvalidRequestError

BERLIN = zone("Europe/Berlin")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sunday_2_to_4(moment: datetime) -> bool:
    return is_open(("sun",), 2 * 60, 4 * 60, BERLIN, moment)


def open_minutes(check, start: datetime, hours: int) -> list[datetime]:
    return [start + timedelta(minutes=m) for m in range(hours * 60) if check(start + timedelta(minutes=m))]


def test_an_ordinary_sunday_window_is_two_hours_of_plant_time():
    # 2026-06-07 is a Sunday; Berlin is UTC+2 in summer
    minutes = open_minutes(sunday_2_to_4, utc(2026, 6, 6, 20), 12)
    assert len(minutes) == 120
    assert (minutes[0], minutes[-1]) == (utc(2026, 6, 7, 0, 0), utc(2026, 6, 7, 1, 59))


def test_the_night_the_clocks_go_forward_the_window_is_one_hour():
    # 29 March 2026: 02:00 CET is 01:00 UTC and becomes 03:00 CEST; 02:00-03:00 local never happens
    minutes = open_minutes(sunday_2_to_4, utc(2026, 3, 28, 20), 12)
    assert len(minutes) == 60
    assert (minutes[0], minutes[-1]) == (utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 59))  # 03:00-03:59 CEST
    assert not sunday_2_to_4(utc(2026, 3, 29, 0, 59))  # 01:59 CET


def test_the_night_the_clocks_go_back_the_window_is_three_hours():
    # 25 October 2026: 03:00 CEST (01:00 UTC) becomes 02:00 CET; 02:00-03:00 local happens twice
    minutes = open_minutes(sunday_2_to_4, utc(2026, 10, 24, 20), 12)
    assert len(minutes) == 180
    assert (minutes[0], minutes[-1]) == (utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 59))


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    # Saturday 22:00 to Sunday 02:00, Berlin; 2026-06-06 is a Saturday (UTC+2)
    def check(moment):
        return is_open(("sat",), 22 * 60, 2 * 60, BERLIN, moment)

    minutes = open_minutes(check, utc(2026, 6, 5, 0), 72)
    assert len(minutes) == 240
    assert (minutes[0], minutes[-1]) == (utc(2026, 6, 6, 20, 0), utc(2026, 6, 6, 23, 59))
    # a Sunday-morning start of the week is not "Saturday night" of the week before
    assert not check(utc(2026, 6, 5, 23, 30))  # Saturday 01:30 local: Friday's night, not a Friday window


def test_a_window_crossing_midnight_on_the_night_the_clocks_go_forward():
    # Saturday 28 March 23:00 to Sunday 04:00 local: 23:00 CET = 22:00 UTC, 04:00 CEST = 02:00 UTC: 4 hours
    def check(moment):
        return is_open(("sat",), 23 * 60, 4 * 60, BERLIN, moment)

    minutes = open_minutes(check, utc(2026, 3, 28, 12), 24)
    assert len(minutes) == 240
    assert (minutes[0], minutes[-1]) == (utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 1, 59))


def test_a_whole_day_and_the_end_at_midnight():
    def check(moment):
        return is_open(("wed",), 0, 24 * 60, BERLIN, moment)

    minutes = open_minutes(check, utc(2026, 6, 9, 12), 48)  # Tuesday noon UTC on
    assert len(minutes) == 24 * 60
    assert minutes[0] == utc(2026, 6, 9, 22, 0)  # Wednesday 00:00 CEST


@pytest.mark.parametrize("text, days", [
    ("sun", ("sun",)), ("Sat,Sun", ("sat", "sun")), ("mon-fri", ("mon", "tue", "wed", "thu", "fri")),
    ("fri-mon", ("mon", "fri", "sat", "sun")), ("weekends", ("sat", "sun")), ("sunday", ("sun",)),
    ("daily", ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
])
def test_days_are_parsed(text, days):
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "su", "funday", "mon-", "mon;tue"])
def test_bad_days_are_refused_saying_how_to_write_them(text):
    with pytest.raises(InvalidRequestError, match="mon,tue,...,sun"):
        parse_days(text)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "Europe/Berlin\n", ""])
def test_unknown_zones_are_refused(name):
    with pytest.raises(InvalidRequestError, match="Europe/Berlin"):
        zone(name)
