"""Turning untrusted mDNS data into text that is safe to store and show.

Anything on the LAN can answer mDNS with any bytes.  Every name and TXT
entry is bounded in size and escaped: a backslash becomes ``\\\\``, a byte
that is not UTF-8 becomes ``\\xNN``, and control, format (bidi overrides),
separator, private-use and unassigned characters become ``\\xNN``,
``\\uNNNN`` or ``\\UNNNNNNNN``.  The result is unambiguous and prints
harmlessly on a terminal or a web page (which still HTML-escapes it).
"""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 255  # an instance, host or service type name
MAX_TXT_BYTES = 2048  # of TXT record data read; the rest is ignored
MAX_TXT_KEYS = 32
MAX_KEY_BYTES = 64  # RFC 6763 recommends keys of at most 9 characters
MAX_VALUE_BYTES = 255  # one TXT string cannot hold more anyway

_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def escape_text(data: bytes | str, limit: int = MAX_NAME_BYTES) -> str:
    """``data`` cut to ``limit`` bytes (or characters, for text) and escaped."""
    if isinstance(data, bytes):
        text = data[:limit].decode("utf-8", "surrogateescape")
    else:
        text = data[:limit]
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)


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
