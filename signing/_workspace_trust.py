"""Rules of a workspace that are not about files: who may sign what, and
what custom metadata and path patterns look like."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tuf.api.metadata import Metadata, Root, Targets, VerificationResult

from signing._workspace_store import TOP_LEVEL
from signing.exceptions import UnsafeNameError, WorkspaceError
from signing.paths import check_target_path, show

if TYPE_CHECKING:
    from signing.workspace import Workspace

_VERSION = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")
MAX_HARDWARE = 64  # models per target
MAX_MODEL = 128  # characters per model name
MAX_KEYS_PER_ROLE = 32


def check_custom(hardware: Sequence[str], version: str) -> dict[str, Any]:
    """The target's custom metadata: exactly {"hardware": [...], "version": "X.Y.Z"}."""
    if isinstance(hardware, str) or not hardware:
        raise WorkspaceError("give at least one hardware model the target is for")
    models: list[str] = []
    for model in hardware:
        if (
            not isinstance(model, str)
            or not model.strip()
            or model != model.strip()
            or len(model) > MAX_MODEL
            or any(unicodedata.category(ch).startswith("C") for ch in model)
        ):
            raise WorkspaceError(
                f"hardware model {show(model)} is not allowed: printable text, 1 to {MAX_MODEL} characters, "
                "no leading or trailing spaces"
            )
        if model not in models:
            models.append(model)
    if len(models) > MAX_HARDWARE:
        raise WorkspaceError(f"at most {MAX_HARDWARE} hardware models per target")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise WorkspaceError(f"version {show(version)} is not of the form X.Y.Z (three whole numbers, e.g. 2.4.1)")
    return {"hardware": models, "version": version}


def check_path_pattern(pattern: str) -> str:
    """A delegation's path pattern: a target path that may hold globs."""
    try:
        return check_target_path(pattern)
    except UnsafeNameError as e:
        raise WorkspaceError(
            f"path pattern {show(pattern)} is not allowed: it must look like a relative target path "
            f"with optional wildcards, e.g. 'firmware/model-x/*' ({e})"
        ) from None


def find_keyids(role: str, keyids: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Resolve full key ids or unique prefixes (8+ hex digits) among ``keyids``."""
    found = []
    for w in wanted:
        matches = [k for k in keyids if k == w] or (
            [k for k in keyids if k.startswith(w)] if len(w) >= 8 else []
        )
        if len(matches) != 1:
            why = "is ambiguous" if matches else "is not a key of"
            raise WorkspaceError(
                f"key id {show(w)} {why} {role} (its keys: {', '.join(k[:16] for k in keyids) or 'none'})"
            )
        if matches[0] not in found:
            found.append(matches[0])
    return found


def results_for(
    ws: Workspace, role: str, md: Metadata, graph: dict[str, str]
) -> list[tuple[str, Root | Targets, VerificationResult]]:
    """Threshold checks ``md`` must pass, as (label, delegator, result).

    Root is checked against the published root and against itself (the
    client's rule for a root rotation); any other role against the current
    (staged, else published) metadata of its delegator."""
    payload = md.signed_bytes
    checks: list[tuple[str, Root | Targets]] = []
    if role == "root":
        previous = ws._published("root")
        if previous is not None:
            checks.append((f"root v{previous.signed.version}", previous.signed))
        checks.append((f"root v{md.signed.version}", md.signed))
    else:
        name = ws._delegator_name(role, graph)
        delegator = ws._current(name).signed
        if not isinstance(delegator, Root | Targets):
            raise WorkspaceError(f"{show(name)} delegates {show(role)} but is neither root nor a targets role")
        checks.append((f"{name} v{delegator.version}", delegator))
    return [(label, d, d.get_verification_result(role, payload, md.signatures)) for label, d in checks]


def shortfalls(role: str, results: list[tuple[str, Root | Targets, VerificationResult]]) -> list[str]:
    """One phrase per unmet threshold, e.g. 'root needs 1 more signature ...'."""
    return [
        f"{role} needs {r.missing} more signature(s) from the keys in {label} "
        f"(has {len(r.signed)} of {r.threshold})"
        for label, _, r in results
        if r.missing
    ]


def per_role(what: str, defaults: dict[str, int], given: dict[str, int] | None) -> dict[str, int]:
    for role in given or {}:
        if role not in TOP_LEVEL:
            raise WorkspaceError(f"{what} given for {show(role)}: only root, targets, snapshot and timestamp")
    return {**defaults, **(given or {})}


def check_threshold(role: str, threshold: int, key_count: int) -> None:
    if isinstance(key_count, bool) or not isinstance(key_count, int) or not 1 <= key_count <= MAX_KEYS_PER_ROLE:
        raise WorkspaceError(f"{role} must end up with 1 to {MAX_KEYS_PER_ROLE} keys, not {key_count}")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= key_count:
        raise WorkspaceError(
            f"threshold {threshold} for {role} is impossible with {key_count} key(s): use 1 to {key_count}"
        )
