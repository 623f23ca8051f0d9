"""Strict JSON parsing and a validator for the JSON Schema subset that the
OpenAPI document (``server.devices.openapi``) uses for request bodies.

Supported keywords: ``$ref`` (to ``#/components/schemas/``), ``type``,
``enum``, ``properties``, ``required``, ``additionalProperties``,
``maxProperties``, ``propertyNames``, ``pattern``, ``minLength``,
``maxLength``, ``minimum``, ``maximum``, ``format`` (``date-time``, and
``text`` / ``multiline-text``: the rule of ``server.text``),
``anyOf`` and ``items``.  Anything else in a schema is a programming error and
raises at once, so the document cannot silently promise more than is checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, NoReturn

from server.devices.exceptions import InvalidRequestError, MalformedJsonError
from server.text import TEXT_FORMATS, refusal

_KNOWN = {"$ref", "type", "enum", "properties", "required", "additionalProperties", "maxProperties",
          "propertyNames", "pattern", "minLength", "maxLength", "minimum", "maximum", "format", "anyOf",
          "items", "description"}
_TYPE_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


MAX_DEPTH = 32  # arrays and objects inside each other in a request body; the API's own go 3 deep
# one pass: a string (to its closing quote, or to the end when it has none:
# never tried again from each later quote, which was quadratic) or a bracket
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def _check_depth(data: bytes) -> None:
    """Refuse a body nested deeper than MAX_DEPTH before parsing it, so the
    answer does not depend on how much of Python's stack the caller used.
    Linear in the body's length, whatever its bytes."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    for token in _TOKEN.findall(data):
        if token[:1] == b'"':
            continue
        depth += 1 if token in (b"[", b"{") else -1
        if depth > MAX_DEPTH:
            raise MalformedJsonError(f"the body nests arrays and objects more than {MAX_DEPTH} deep: "
                                     "send the fields the API documents")


def loads_strict(data: bytes):
    """Parse a request body: UTF-8 JSON, no NaN/Infinity, no duplicate keys,
    at most MAX_DEPTH levels of arrays and objects."""
    try:
        text = data.decode("utf-8")
        _check_depth(data)
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise MalformedJsonError("the body is not UTF-8: send JSON encoded as UTF-8") from None
    except RecursionError:
        raise MalformedJsonError("the body nests too deeply") from None
    except ValueError as exc:
        raise MalformedJsonError(f"the body is not valid JSON ({exc}): send one JSON object") from None


@cache
def _pattern(pattern: str) -> re.Pattern:
    # JSON Schema patterns are ECMA-262 and unanchored (search); "$" in
    # Python also matches before a final newline, so anchor with \Z instead.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _type_ok(value, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if kind == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    raise AssertionError(f"unknown type {kind!r} in schema")


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for kind in ("integer", "number", "string", "array", "object"):
        if kind != "integer" and _type_ok(value, kind) or kind == "integer" and isinstance(value, int):
            return _TYPE_NAMES[kind]
    return type(value).__name__


class SchemaValidator:
    """Validate instances against schemas that may ``$ref`` ``components``.

    Each schema is compiled once into nested closures: a check-in is
    validated on every request, so the walk must be cheap.
    """

    def __init__(self, components: dict):
        self.schemas = components.get("schemas", {})
        self._named: dict[str, object] = {}

    def validate(self, value, schema: dict, where: str = "body"):
        """Return ``value`` (integral floats turned into ints) or raise
        :class:`InvalidRequestError` naming the first problem."""
        if set(schema) == {"$ref"}:
            return self._ref(schema["$ref"])(value, where)
        return self._compile(schema)(value, where)

    def _ref(self, ref: str):
        name = ref.removeprefix("#/components/schemas/")
        check = self._named.get(name)
        if check is None:
            check = self._named[name] = self._compile(self.schemas[name])
        return check

    def _compile(self, schema: dict):
        unknown = set(schema) - _KNOWN
        if unknown:
            raise AssertionError(f"schema keywords {sorted(unknown)} are not supported by the validator")
        if "$ref" in schema:
            ref = schema["$ref"]
            return lambda value, where: self._ref(ref)(value, where)
        if "anyOf" in schema:
            return self._compile_any_of([self._compile(option) for option in schema["anyOf"]])
        steps = []
        kinds = schema.get("type")
        if kinds is not None:
            steps.append(_type_step([kinds] if isinstance(kinds, str) else list(kinds)))
        if "enum" in schema:
            steps.append(_enum_step(schema["enum"]))
        string_steps = _string_steps(schema)
        number_steps = _number_steps(schema)
        object_step = self._object_step(schema) if _OBJECT_KEYS & set(schema) else None
        item_check = self._compile(schema["items"]) if "items" in schema else None

        def check(value, where):
            for step in steps:
                value = step(value, where)
            if isinstance(value, str):
                for step in string_steps:
                    step(value, where)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                for step in number_steps:
                    step(value, where)
            elif isinstance(value, dict):
                if object_step is not None:
                    value = object_step(value, where)
            elif isinstance(value, list) and item_check is not None:
                value = [item_check(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return value

        return check

    @staticmethod
    def _compile_any_of(options):
        def any_of(value, where):
            problems = []
            for option in options:
                try:
                    return option(value, where)
                except InvalidRequestError as exc:
                    problems.append(str(exc))
            _fail(where, "matches none of the allowed forms (" + " | ".join(problems) + ")")
        return any_of

    def _object_step(self, schema: dict):
        props = {name: self._compile(sub) for name, sub in schema.get("properties", {}).items()}
        required = list(schema.get("required", []))
        max_props = schema.get("maxProperties")
        extra = schema.get("additionalProperties", True)
        extra_check = self._compile(extra) if isinstance(extra, dict) else None
        names = self._compile({"type": "string", **schema["propertyNames"]}) if "propertyNames" in schema else None
        allowed = ", ".join(sorted(props))

        def check_object(value: dict, where: str) -> dict:
            for name in required:
                if name not in value:
                    _fail(where, f"the field {name!r} is required")
            if max_props is not None and len(value) > max_props:
                _fail(where, f"has {len(value)} entries, at most {max_props} are allowed")
            out = {}
            for key, item in value.items():
                if names is not None:
                    names(key, f"{where} name {key[:64]!r}")
                check = props.get(key)
                if check is not None:
                    out[key] = check(item, f"{where}.{key}")
                elif extra is False:
                    _fail(where, f"unknown field {key[:64]!r} (allowed: {allowed})")
                elif extra_check is not None:
                    out[key] = extra_check(item, f"{where}.{key}")
                else:
                    out[key] = item
            return out

        return check_object


# a check of one value at one place (``where``); raises InvalidRequestError
_Step = Callable[[Any, str], object]
_OBJECT_KEYS = {"properties", "required", "additionalProperties", "maxProperties", "propertyNames"}


def _fail(where: str, problem: str) -> NoReturn:
    raise InvalidRequestError(f"{where}: {problem}; see /api/v1/openapi.json")


def _type_step(kinds: list[str]):
    wanted = " or ".join(_TYPE_NAMES[k] for k in kinds)
    to_int = "integer" in kinds

    def check_type(value, where):
        if not any(_type_ok(value, k) for k in kinds):
            _fail(where, f"must be {wanted}, not {_describe(value)}")
        if to_int and isinstance(value, float):
            return int(value)
        return value

    return check_type


def _enum_step(allowed: list):
    text = ", ".join(map(str, allowed))

    def check_enum(value, where):
        if value not in allowed:
            _fail(where, f"must be one of {text}")
        return value

    return check_enum


def _string_steps(schema: dict) -> list[_Step]:
    steps: list[_Step] = []
    if schema.get("format") in TEXT_FORMATS:  # before the pattern: its message names the character
        multiline = TEXT_FORMATS[schema["format"]]
        steps.append(lambda v, w: _text_step(v, w, multiline))
    if "minLength" in schema:
        low = schema["minLength"]
        steps.append(lambda v, w: len(v) < low and _fail(w, f"must be at least {low} characters"))
    if "maxLength" in schema:
        high = schema["maxLength"]
        steps.append(lambda v, w: len(v) > high and _fail(w, f"must be at most {high} characters"))
    if "pattern" in schema:
        source, regex = schema["pattern"], _pattern(schema["pattern"])
        steps.append(lambda v, w: regex.search(v) is None and _fail(w, f"{v[:80]!r} does not match {source}"))
    if schema.get("format") == "date-time":
        steps.append(_check_date_time)
    return steps


def _text_step(value: str, where: str, multiline: bool) -> None:
    problem = refusal(where, value, multiline=multiline)
    if problem:
        raise InvalidRequestError(problem + "; see /api/v1/openapi.json")


def _check_date_time(value: str, where: str) -> None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        _fail(where, f"{value[:40]!r} is not a valid ISO 8601 date and time")


def _number_steps(schema: dict) -> list[_Step]:
    steps: list[_Step] = []
    if "minimum" in schema:
        low = schema["minimum"]
        steps.append(lambda v, w: v < low and _fail(w, f"{v} is below the minimum {low}"))
    if "maximum" in schema:
        high = schema["maximum"]
        steps.append(lambda v, w: v > high and _fail(w, f"{v} is above the maximum {high}"))
    return steps
