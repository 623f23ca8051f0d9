"""Query strings of the admin API and the console's list pages, checked
against the parameters ``server.console.openapi`` declares (the same ones the
OpenAPI document shows).  An unknown parameter is refused, not ignored."""

from __future__ import annotations

import re
from collections.abc import Iterable

from server.console.openapi import query_parameters
from server.devices.exceptions import InvalidRequestError
from server.devices.openapi import ADMIN_PATTERNS
from server.devices.schema import SchemaValidator

PARAMETERS = query_parameters(ADMIN_PATTERNS)
_VALIDATOR = SchemaValidator({})
_INTEGER = re.compile(r"[0-9]{1,16}")


def parse(operation: str, args, *, ignore_empty: bool = False, also: Iterable[str] = ()) -> dict:
    """``args`` (a request's MultiDict) for ``operation``, checked and typed.
    ``ignore_empty``: a form's empty fields mean "any" (the console's filter
    forms send every field); ``also``: further names a page takes itself."""
    declared = PARAMETERS[operation]
    out: dict = {}
    for name in args:
        if name in also:
            continue
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise InvalidRequestError(f"unknown query parameter {name[:40]!r}: this takes {known}")
        values = args.getlist(name)
        if len(values) > 1:
            raise InvalidRequestError(f"query parameter {name!r} is given {len(values)} times; give it once")
        if ignore_empty and values[0] == "":
            continue
        value: object = values[0]
        if declared[name].get("type") == "integer":
            if not _INTEGER.fullmatch(values[0]):
                raise InvalidRequestError(f"query parameter {name!r} must be a whole number")
            value = int(values[0])
        out[name] = _VALIDATOR.validate(value, declared[name], where=f"query parameter {name}")
    return out
