"""Turning untrusted mDNS data into text that is safe to store and show.

Anything on the LAN can answer mDNS with any bytes.  Every name and TXT
entry is bounded in size and escaped by ``server.text.escape_text`` (the one
rule for text from the LAN): a backslash becomes ``\\\\``, a byte
that is not UTF-8 becomes ``\\xNN``, and control, format (bidi overrides),
separator, private-use and unassigned characters become ``\\xNN``,
``\\uNNNN`` or ``\\UNNNNNNNN``.  The result is unambiguous and prints
harmlessly on a terminal or a web page (which still HTML-escapes it).
"""

from __future__ import annotations

from server.text import escape_text

__all__ = ["MAX_NAME_BYTES", "decode_txt", "escape_text"]

MAX_NAME_BYTES = 255  # an instance, host or service type name
MAX_TXT_BYTES = 2048  # of TXT record data read; the rest is ignored
MAX_TXT_KEYS = 32
MAX_KEY_BYTES = 64  # RFC 6763 recommends keys of at most 9 characters
MAX_VALUE_BYTES = 255  # one TXT string cannot hold more anyway


def decode_txt(raw: bytes) -> dict[str, str | None]:
    """TXT record data (length-prefixed strings) as a bounded, escaped dict.

    As RFC 6763 section 6 says: keys are case-insensitive (kept lower-case),
    only the first occurrence of a key counts, a string without ``=`` is a
    key with no value (None), and a string starting with ``=`` is ignored.
    """
    raw = raw[:MAX_TXT_BYTES]
    out: dict[str, str | None] = {}
    i = 0
    while i < len(raw) and len(out) < MAX_TXT_KEYS:
        length = raw[i]
        entry = raw[i + 1:i + 1 + length]
        i += 1 + length
        if not entry or entry.startswith(b"="):
            continue
        key, sep, value = entry.partition(b"=")
        name = escape_text(key, MAX_KEY_BYTES).lower()
        if name in out:
            continue
        out[name] = escape_text(value, MAX_VALUE_BYTES) if sep else None
    return out
