"""The one rule for text that a device or anything on the LAN sends.

Two halves, used everywhere such text enters or leaves:

- **Refused at the door** (the device API, the report form): a string may
  hold no control character (Unicode category Cc; line breaks and tabs only
  where a field is multi-line), no format character (Cf: the bidi overrides
  such as U+202E, zero-width characters, U+009B's cousins), no lone
  surrogate (Cs) and no line or paragraph separator (Zl, Zp).
  ``first_unsafe`` finds the first such character; the OpenAPI document
  states the rule as ``format: text`` / ``multiline-text`` beside a
  ``pattern`` that spells it out for the Basic Multilingual Plane.
- **Escaped on the way out** (logs, terminals): ``escape_text`` bounds a
  string and writes every control, format, surrogate, separator,
  private-use and unassigned character, and the backslash, as a visible
  escape (``\\x1b``, ``\\u202e``), so what was stored cannot move a cursor,
  recolour a terminal or reorder a log line, and the escape is unambiguous.
"""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
ESCAPED_CATEGORIES = REFUSED_CATEGORIES | {"Co", "Cn"}
MULTILINE_ALLOWED = frozenset("\n\t")
DEFAULT_LOG_LIMIT = 300  # characters of one untrusted value in a log line

# The refused categories in the Basic Multilingual Plane (Unicode 14), as a
# regular expression character class in the common subset of ECMA-262 (with
# the ``u`` flag) and Python; a unit test checks it against unicodedata.
_REFUSED_BMP = (r"\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
                r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb")
MULTILINE_PATTERN = "^[^" + _REFUSED_BMP + "]*$"
TEXT_PATTERN = "^[^\\t\\n" + _REFUSED_BMP + "]*$"
TEXT_FORMATS = {"text": False, "multiline-text": True}  # OpenAPI format -> line breaks and tabs allowed


def first_unsafe(text: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """(position, character) of the first character the rule refuses, or None."""
    for i, ch in enumerate(text):
        if multiline and ch in MULTILINE_ALLOWED:
            continue
        if unicodedata.category(ch) in REFUSED_CATEGORIES:
            return i, ch
    return None


def refusal(field: str, text: str, *, multiline: bool = False) -> str | None:
    """A one-line reason why ``text`` breaks the rule (naming ``field``), or None."""
    found = first_unsafe(text, multiline=multiline)
    if found is None:
        return None
    i, ch = found
    allowed = "line breaks and tabs are the only control characters allowed" if multiline else \
        "it must be one line of printable text"
    return (f"{field} holds U+{ord(ch):04X} ({unicodedata.name(ch, 'a control character').lower()}) at position "
            f"{i}: {allowed}, with no formatting characters such as bidi overrides")


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def escape_text(data: bytes | str | None, limit: int = DEFAULT_LOG_LIMIT) -> str:
    """``data`` cut to ``limit`` bytes (or characters, for text) and escaped:
    safe to write to a log, a terminal or (HTML-escaped as usual) a page."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        text = data[:limit].decode("utf-8", "surrogateescape")
    else:
        text = data[:limit]
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ESCAPED_CATEGORIES:
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)
