"""When a header block is complete (appliance/serve_worker.py)."""

import pytest

from appliance.serve_worker import header_complete


@pytest.mark.parametrize("head, complete", [
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", True),
    (b"GET /healthz HTTP/1.1\r\n\r\n", True),
    (b"\r\nGET /healthz HTTP/1.1\r\n\r\n", True),  # an empty line before the request line is allowed
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n", False),
    (b"GET /healthz HT", False),
    (b"", False),
    (b"\r\n\r\n", False),  # empty lines only: no request yet
    (b"\r\n\r\nGET / HTTP/1.1\r\n", False),
])
def test_header_complete(head, complete):
    assert header_complete(head) is complete
    assert header_complete(bytearray(head)) is complete


def test_a_header_timeout_below_one_second_is_refused():
    from server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="header_timeout must be at least 1"):
        Settings(header_timeout=0).validate()
