"""The few SQL expressions SQLite and PostgreSQL spell differently.

The services write one SQL for both engines (``server.db``); where the two
differ, they ask here for the fragment, by the database they run on."""

from __future__ import annotations

from typing import Any

from server.db import engine_of


def group_concat(db: Any, expr: str, separator: str) -> str:
    """The values of ``expr`` in a group, joined by ``separator`` (a fixed
    string of the caller's, never data)."""
    assert "'" not in separator
    if engine_of(db) == "postgresql":
        return f"string_agg({expr}, '{separator}')"
    return f"group_concat({expr}, '{separator}')"


def unix_seconds(db: Any, iso_expr: str) -> str:
    """Unix seconds of an ISO 8601 UTC text column, as an integer."""
    if engine_of(db) == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM CAST({iso_expr} AS TIMESTAMPTZ)) AS BIGINT)"
    return f"CAST(strftime('%s', {iso_expr}) AS INTEGER)"


def table_exists(db: Any, name: str) -> bool:
    if engine_of(db) == "postgresql":
        return db.execute_sql("SELECT to_regclass(?) IS NOT NULL", (f'"{name}"',)).fetchone()[0]
    return db.execute_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (name,)).fetchone() is not None
