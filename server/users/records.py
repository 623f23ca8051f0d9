"""Dataclasses at the users domain's boundary.  Never a password or its hash."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "operator", "auditor")


@dataclass(frozen=True)
class UserInfo:
    username: str
    role: str
    created_at: str
    disabled: bool = False
