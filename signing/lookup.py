"""How a TUF client finds a target, and so which listed targets it can find.

A target is trusted only through the delegation walk of the specification
(5.6.7): pre-order, depth first from top-level ``targets``, following only
the delegations whose ``paths`` or ``path_hash_prefixes`` match the target,
stopping below a terminating delegation, visiting each role once and at
most ``max_delegations`` roles.  :func:`client_lookup` is python-tuf's
``Updater._preorder_depth_first_walk`` step for step, and matches paths with
python-tuf's own ``Delegations.get_roles_for_target`` (``is_delegated_path``:
``*`` never matches ``/``, case-sensitive, hash prefixes of the UTF-8 path).

A client's lookup *fails* when it reaches a role it cannot load: one that
the snapshot does not list, or one that has expired.  It finds nothing when
no role on its way lists the path.  :func:`resolve_targets` runs the lookup
for every target some role lists and sorts them into *available* (the
client finds this very entry), *unavailable* (the lookup fails on the way)
and *ignored* (the client never reaches this entry).

Pure functions over parsed metadata: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from tuf.api.metadata import Metadata, Snapshot, TargetFile, Targets, Timestamp

from signing.paths import show
from signing.trust import TrustedState, when

CLIENT_MAX_DELEGATIONS = 32  # roles one lookup visits, python-tuf's UpdaterConfig default

AVAILABLE, UNAVAILABLE, IGNORED = "available", "unavailable", "ignored"


@dataclass(frozen=True)
class Lookup:
    """The outcome of one client lookup of a target path."""

    role: str | None = None  # the role whose entry the client takes
    target: TargetFile | None = None
    blocked_by: str | None = None  # the role the lookup could not load
    why: str | None = None  # why it could not, e.g. "is not listed in the snapshot"
    exhausted: bool = False  # stopped after max_delegations roles


@dataclass(frozen=True)
class TargetStatus:
    """One target as a role lists it, and what a client makes of it."""

    path: str
    role: str  # the role listing it
    target: TargetFile
    state: str  # AVAILABLE | UNAVAILABLE | IGNORED
    why: str = ""  # for the last two: one clause a person can act on


def role_problem(name: str, roles: Mapping[str, Targets], now: datetime | None,
                 unavailable: Mapping[str, str] | None = None) -> str | None:
    """Why a client cannot load role ``name`` (None when it can)."""
    if unavailable and name in unavailable:
        return unavailable[name]
    signed = roles.get(name)
    if signed is None:
        return "is not listed in the snapshot"
    if now is not None and signed.is_expired(now):
        return f"expired on {when(signed.expires)}"
    return None


def client_lookup(path: str, roles: Mapping[str, Targets], *, now: datetime | None = None,
                  unavailable: Mapping[str, str] | None = None,
                  max_delegations: int = CLIENT_MAX_DELEGATIONS) -> Lookup:
    """Look ``path`` up as python-tuf's client does, over the verified
    targets roles ``roles`` (name -> signed).  A role absent from ``roles``,
    named in ``unavailable`` or expired at ``now`` stops the lookup."""
    to_visit: list[str] = ["targets"]
    visited: set[str] = set()
    while len(visited) <= max_delegations and to_visit:
        name = to_visit.pop()
        if name in visited:
            continue
        problem = role_problem(name, roles, now, unavailable)
        if problem is not None:
            return Lookup(blocked_by=name, why=problem)
        signed = roles[name]
        target = signed.targets.get(path)
        if target is not None:
            return Lookup(role=name, target=target)
        visited.add(name)
        if signed.delegations is not None:
            children: list[str] = []
            for child, terminating in signed.delegations.get_roles_for_target(path):
                children.append(child)
                if terminating:
                    to_visit = []
                    break
            to_visit.extend(reversed(children))
    return Lookup(exhausted=bool(to_visit))


def resolve_targets(roles: Mapping[str, Targets], *, now: datetime | None = None,
                    unavailable: Mapping[str, str] | None = None,
                    max_delegations: int = CLIENT_MAX_DELEGATIONS) -> list[TargetStatus]:
    """Every target every role in ``roles`` lists, with what a client's
    lookup of its path gives (see the module docstring), sorted by path."""
    lookups: dict[str, Lookup] = {}
    out: list[TargetStatus] = []
    for role, signed in roles.items():
        for path, target in signed.targets.items():
            found = lookups.get(path)
            if found is None:
                found = lookups[path] = client_lookup(path, roles, now=now, unavailable=unavailable,
                                                      max_delegations=max_delegations)
            out.append(_status(path, role, target, found, max_delegations))
    out.sort(key=lambda s: (s.path, s.state != AVAILABLE, s.role))
    return out


def _status(path: str, role: str, target: TargetFile, found: Lookup, max_delegations: int) -> TargetStatus:
    if found.role == role:
        return TargetStatus(path, role, target, AVAILABLE)
    if found.blocked_by is not None:
        return TargetStatus(path, role, target, UNAVAILABLE,
                            f"a client's lookup of it stops at role {show(found.blocked_by)}, which {found.why}")
    if found.role is not None:
        return TargetStatus(path, role, target, IGNORED, f"a client finds it in role {show(found.role)} first")
    if found.exhausted:
        return TargetStatus(path, role, target, IGNORED,
                            f"a client gives up after visiting {max_delegations} roles before reaching "
                            f"{show(role)}")
    if role == "targets":  # cannot happen: targets is always visited first
        return TargetStatus(path, role, target, IGNORED, "a client never reaches it")
    return TargetStatus(path, role, target, IGNORED,
                        f"outside the paths delegated to {show(role)} (along every delegation that leads to it)")


def unavailable_roles(roles: Mapping[str, Targets], *, now: datetime | None = None,
                      unavailable: Mapping[str, str] | None = None) -> dict[str, str]:
    """Delegated roles reachable from ``targets`` that a client cannot load:
    role -> why.  Not below them: what they delegate cannot be known."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    stack = ["targets"]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        problem = role_problem(name, roles, now, unavailable)
        if problem is not None:
            out[name] = problem
            continue
        delegations = roles[name].delegations
        if delegations is None:
            continue
        if delegations.roles is not None:
            stack.extend(delegations.roles)
        elif delegations.succinct_roles is not None:
            stack.extend(delegations.succinct_roles.get_roles())
    return out


def targets_roles(state: TrustedState) -> dict[str, Targets]:
    """The targets roles of a trusted state, parsed: name -> signed."""
    return {name: Metadata[Targets].from_bytes(data).signed for name, data in state.roles.items()
            if name not in ("root", "timestamp", "snapshot")}


def refresh_problem(state: TrustedState, now: datetime) -> str | None:
    """Why a client's refresh of this trusted state fails at ``now`` (its
    timestamp or snapshot has expired), naming the file; None if it works.
    Top-level targets is a role like the others: see :func:`role_problem`."""
    ts = state.roles.get("timestamp")
    if ts is None:
        return "timestamp.json: nothing imported yet"
    timestamp = Metadata[Timestamp].from_bytes(ts).signed
    if timestamp.is_expired(now):
        return f"timestamp.json expired on {when(timestamp.expires)}"
    snap = state.roles.get("snapshot")
    if snap is None:
        return f"{timestamp.snapshot_meta.version}.snapshot.json is missing"
    snapshot = Metadata[Snapshot].from_bytes(snap).signed
    if snapshot.is_expired(now):
        return f"{snapshot.version}.snapshot.json expired on {when(snapshot.expires)}"
    return None
