"""The files of a signing workspace: layout, settings, metadata, target files.

Everything the :class:`~signing.workspace.Workspace` reads or writes on disk
goes through here, so the layout is described in one place::

    DIR/workspace.json              name, default expiry per role, key type
    DIR/keys/<role>-<n>.key|.pub    keys made by the tool (encrypted)
    DIR/staged/<role>.json          metadata being edited or signed
    DIR/published/metadata/         N.root.json ..., timestamp.json
    DIR/published/targets/<dir>/<sha256>.<basename>
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from signing.durable import PendingFile, write_atomic
from signing.exceptions import RepositoryNameError, WorkspaceError
from signing.paths import check_repo_name, split_target_path

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 30, "timestamp": 7}
CONFIG_NAME = "workspace.json"
CONFIG_FORMAT = 1
CHUNK = 1024 * 1024  # bytes copied and hashed at a time
MAX_METADATA = 16 * 1024 * 1024  # bytes; python-tuf's own caps are lower
def check_days(role: str, days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise WorkspaceError(f"expiry for {role} must be a whole number of days from 1 to 36500, not {days!r}")
    return days


def utc_in(days: int) -> datetime:
    """Now plus ``days``, timezone-aware UTC, whole seconds."""
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def serialize(md: Metadata) -> bytes:
    return md.to_bytes(JSONSerializer(compact=False))


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a reader sees old or new, never
    half, and a crash right after leaves the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=mode)


def read_metadata(path: Path) -> Metadata:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_METADATA + 1)
    except FileNotFoundError:
        raise WorkspaceError(f"{path} is missing: the workspace is incomplete") from None
    if len(raw) > MAX_METADATA:
        raise WorkspaceError(f"{path} is too large to be TUF metadata")
    try:
        return Metadata.from_bytes(raw)
    except DeserializationError as e:
        raise WorkspaceError(f"{path} is not valid TUF metadata: {e}") from None


@dataclass
class Settings:
    """``workspace.json``: what the workspace remembers between commands."""

    name: str
    expiry_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_EXPIRY_DAYS))
    key_type: str = "ed25519"

    def days_for(self, role: str) -> int:
        return self.expiry_days.get(role) or self.expiry_days["targets"]

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, "name": self.name, "key_type": self.key_type, "expiry_days": self.expiry_days}


class Layout:
    """Paths inside one workspace folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / CONFIG_NAME
        self.keys = self.root / "keys"
        self.staged = self.root / "staged"
        self.metadata = self.root / "published" / "metadata"
        self.targets = self.root / "published" / "targets"

    def staged_file(self, role: str) -> Path:
        return self.staged / f"{role}.json"

    def published_file(self, role: str, version: int | None = None) -> Path:
        if role == "timestamp":
            return self.metadata / "timestamp.json"
        return self.metadata / f"{version}.{role}.json"

    def target_file(self, target_path: str, sha256: str) -> Path:
        folder, base = split_target_path(target_path)
        return self.targets / folder / f"{sha256}.{base}"

    def new_key_path(self, role: str, suffix: str = ".key") -> Path:
        n = 1
        while (self.keys / f"{role}-{n}.key").exists() or (self.keys / f"{role}-{n}.pub").exists():
            n += 1
        return self.keys / f"{role}-{n}{suffix}"

    def root_versions(self) -> list[int]:
        versions = []
        for p in self.metadata.glob("*.root.json"):
            head = p.name.split(".", 1)[0]
            if head.isdigit():
                versions.append(int(head))
        return sorted(versions)

    # settings -----------------------------------------------------------
    def read_settings(self) -> Settings:
        try:
            doc = json.loads(self.config.read_bytes())
            days = {str(k): int(v) for k, v in doc["expiry_days"].items()}
            key_type = doc.get("key_type", "ed25519")
            return Settings(name=check_repo_name(doc["name"]), expiry_days=days, key_type=key_type)
        except RepositoryNameError as e:
            raise WorkspaceError(f"{self.config}: {e}; the appliance would refuse it, so change the name "
                                 "there before you make a bundle") from None
        except FileNotFoundError:
            raise WorkspaceError(
                f"{self.root} is not an airlock-sign workspace (no {CONFIG_NAME}): create one with 'airlock-sign init'"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise WorkspaceError(f"{self.config} is damaged: {e}") from None

    def write_settings(self, settings: Settings) -> None:
        atomic_write(self.config, (json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def import_target_file(layout: Layout, local_file: Path, target_path: str) -> tuple[Path, int, str]:
    """Copy ``local_file`` into ``published/targets`` under its hash name.

    Streams and hashes in one pass; the file only appears under its final,
    content-addressed name once complete.  Returns (path, length, sha256).
    """
    try:
        src = open(local_file, "rb")  # noqa: SIM115 - closed by the with block below, once opened
    except OSError as e:
        raise WorkspaceError(f"cannot read {local_file}: {e.strerror}") from None
    folder, _ = split_target_path(target_path)
    dest_dir = layout.targets / folder
    dest_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    length = 0
    with src, PendingFile(dest_dir) as pending:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            pending.file.write(chunk)
            length += len(chunk)
        sha = digest.hexdigest()
        dest = pending.commit(layout.target_file(target_path, sha))  # same content, same name: replacing is harmless
    return dest, length, sha
