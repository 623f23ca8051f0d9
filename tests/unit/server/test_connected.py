"""``server.db.connected``: a service called inside a request shares the
request's open connection instead of opening (and running the pragmas of)
a second one; called with none open, it opens one for the block only."""

from __future__ import annotations

from server import bind_database
from server.db import connected
from server.models import database
from server.settings import load_settings
from server.timekeeping import high_water_mark


def test_an_open_connection_is_shared_and_stays_open(home):
    bind_database(load_settings(home, environ={}))
    database.connect(reuse_if_open=True)
    try:
        before = database.connection()
        with connected(database):
            high_water_mark()
            assert database.connection() is before
        assert not database.is_closed() and database.connection() is before
    finally:
        database.close()


def test_with_none_open_one_is_opened_for_the_block_only(home):
    bind_database(load_settings(home, environ={}))
    if not database.is_closed():
        database.close()
    with connected(database):
        assert not database.is_closed()
        assert database.execute_sql("SELECT COUNT(*) FROM time_mark").fetchone()[0] >= 0
    assert database.is_closed()
