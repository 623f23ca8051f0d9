"""The trusted-time guard with an injected clock, over a real appliance
database: normal drift is accepted, a clock set back a year, ahead ten years
or dead at 1970 is refused with what it reads and what it should read, and
the mark only moves forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server import bind_database, timekeeping
from server.settings import load_settings
from server.timekeeping import RELEASE_FLOOR, ClockError, clock_health, record, trusted_now
from tests.support.homedb import append_setting

MARK = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(home):
    s = load_settings(home)
    bind_database(s)
    return s


def test_init_records_the_clock_it_trusted(settings):
    mark = timekeeping.high_water_mark()
    assert mark.at > RELEASE_FLOOR and "airlock init" not in mark.source  # by the login user
    assert abs((mark.at - datetime.now(UTC)).total_seconds()) < 3600


@pytest.mark.parametrize("drift", [timedelta(minutes=-5), timedelta(seconds=-1), timedelta(0),
                                   timedelta(minutes=7), timedelta(days=30)])
def test_normal_drift_is_accepted(settings, drift):
    record("verified", MARK, "import 3")
    assert trusted_now(settings, "import", MARK + drift) == MARK + drift
    assert clock_health(settings, MARK + drift).ok


def test_a_clock_set_back_a_year_is_refused_saying_what_it_reads_and_should_read(settings):
    record("verified", MARK, "import 3")
    with pytest.raises(ClockError) as err:
        trusted_now(settings, "import", MARK - timedelta(days=365))
    msg = str(err.value)
    assert msg.startswith("import refused: the clock reads 2026-03-01T12:00:00+00:00, earlier than "
                          "2027-03-01T12:00:00+00:00 (signed metadata verified or signed at import 3)"), msg
    assert "timedatectl set-time" in msg and "chrony" in msg and "to at least 2027-03-01T12:00:00+00:00" in msg
    assert "\n" not in msg
    assert err.value.status == 503 and err.value.code == "clock_untrusted"
    health = clock_health(settings, MARK - timedelta(days=365))
    assert health.state == "behind" and not health.ok and health.mark == "2027-03-01T12:00:00+00:00"


def test_a_clock_ten_years_ahead_is_refused(settings):
    record("verified", MARK, "import 3")
    with pytest.raises(ClockError) as err:
        trusted_now(settings, "signing", MARK + timedelta(days=3652))
    msg = str(err.value)
    assert msg.startswith("signing refused: the clock reads 2037-02-28T12:00:00+00:00, 3652 days after "
                          "2027-03-01T12:00:00+00:00"), msg
    assert "clock_max_ahead_days (400)" in msg and "timedatectl" in msg
    assert clock_health(settings, MARK + timedelta(days=3652)).state == "ahead"


def test_the_ahead_limit_is_a_setting(home):
    append_setting(home, "clock_max_ahead_days = 4000\n")
    settings = load_settings(home)
    bind_database(settings)
    record("verified", MARK, "import 3")
    assert trusted_now(settings, "import", MARK + timedelta(days=3652))


def test_a_dead_rtc_at_1970_is_refused_even_on_a_fresh_home(settings):
    """No mark is needed: the release floor alone catches it."""
    settings_home_marks = timekeeping.high_water_mark()
    assert settings_home_marks.at >= RELEASE_FLOOR
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ClockError, match=r"the clock reads 1970-01-01T00:00:00\+00:00, earlier than 20"):
        trusted_now(settings, "enrollment", epoch)


def test_the_mark_only_moves_forward(settings):
    record("verified", MARK, "import 3")
    record("verified", MARK - timedelta(days=2), "import 4")  # an older reading never lowers it
    mark = timekeeping.high_water_mark()
    assert mark.at == MARK and mark.source.endswith("import 3")
    record("seen", MARK + timedelta(hours=1), "airlock init")
    assert timekeeping.high_water_mark() == timekeeping.TimeMark(MARK + timedelta(hours=1),
                                                                "the clock seen at airlock init")
    with pytest.raises(ValueError):
        record("guess", MARK, "")
