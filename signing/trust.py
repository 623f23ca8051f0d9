"""What the appliance trusts, checks on keys and signatures that python-tuf
leaves to its caller, and the verifier's one-line refusals.  No I/O: lookups
are passed in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp
from tuf.api.serialization import DeserializationError

from signing.exceptions import AirlockError, VerificationError
from signing.paths import role_filename, show

MAX_LENGTH = {  # bytes, ngclient's defaults
    "root": 512_000,
    "timestamp": 16_384,
    "snapshot": 2_000_000,
    "targets": 5_000_000,
}

# lookup(filename, cap) -> bytes or None; the callable enforces its own size cap
MetadataLookup = Callable[[str, int], "bytes | None"]


def when(moment: datetime) -> str:
    """A metadata expiry as a person reads it: ``2026-12-01 13:05:00 UTC``."""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


class Refusal:
    """Builds the verifier's one-line reasons for repository ``repo``: which
    file, which check, what to do."""

    def __init__(self, repo: str):
        self.repo = repo

    def __call__(self, filename: str, what: str,
                 advice: str = "ask the vendor for a correctly signed bundle") -> VerificationError:
        return VerificationError(f"repository {show(self.repo)}: {filename}: {what}; {advice}")

    def from_tuf(self, filename: str, exc: Exception, *, expires: datetime | None = None) -> VerificationError:
        """Translate python-tuf's error on ``filename``; ``expires`` is that
        file's expiry, named when it is the reason."""
        return self(filename, *self.explain(exc, expires=expires))

    @staticmethod
    def explain(exc: Exception, *, expires: datetime | None = None) -> tuple[str, str]:
        """(what failed, what to do) for python-tuf's error ``exc``."""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, tuf_exceptions.UnsignedMetadataError):
            return (f"signature check failed ({detail})",
                    "it must be signed by the threshold of keys the trusted root names")
        if isinstance(exc, tuf_exceptions.ExpiredMetadataError):
            on = f" on {when(expires)}" if expires is not None else ""
            return f"expired{on} ({detail})", "ask the vendor to re-sign it with a later expiry"
        if isinstance(exc, tuf_exceptions.BadVersionNumberError):
            return (f"version check failed ({detail}): rollback refused",
                    "versions may never go back; ask the vendor for a newer bundle")
        if isinstance(exc, tuf_exceptions.LengthOrHashMismatchError):
            return (f"length or hash differs from what the signed metadata lists ({detail})",
                    "the file was altered or mixed from another release; get a fresh copy of the bundle")
        if isinstance(exc, DeserializationError):
            return f"not valid TUF metadata ({detail})", "ask the vendor for a correctly signed bundle"
        return f"refused by TUF verification ({detail})", "ask the vendor for a correctly signed bundle"


@dataclass
class TrustedState:
    """What is trusted before an import: unversioned role name -> bytes."""

    root: bytes
    roles: dict[str, bytes] = field(default_factory=dict)  # timestamp, snapshot, targets, delegated

    @property
    def root_version(self) -> int:
        return Metadata[Root].from_bytes(self.root).signed.version


def valid_signers(md: Metadata, keyids, keys) -> list[str]:
    """Key ids among ``keyids`` whose signature on ``md`` verifies."""
    out = []
    for keyid, signature in md.signatures.items():
        if keyid in keyids and keyid in keys:
            try:
                keys[keyid].verify_signature(signature, md.signed_bytes)
            except Exception:  # noqa: BLE001 - any failure means "did not sign"
                continue
            out.append(keyid)
    return sorted(out)


def same_signed_content(a: bytes, b: bytes) -> bool:
    """Same canonical signed content and signatures, whatever the layout."""
    try:
        ma, mb = Metadata.from_bytes(a), Metadata.from_bytes(b)
    except Exception:  # noqa: BLE001 - unparsable is simply "not the same"
        return False
    return ma.signed_bytes == mb.signed_bytes and {k: s.signature for k, s in ma.signatures.items()} == {
        k: s.signature for k, s in mb.signatures.items()}


def _key_value(key) -> tuple:
    public = key.keyval.get("public", "") if isinstance(key.keyval, dict) else ""
    return key.keytype, "".join(str(public).split())


def refuse_duplicate_key_values(refuse, filename: str, role: str, keyids, keys) -> None:
    """One key listed under two key ids would count twice towards a
    threshold (python-tuf counts key ids): refuse it."""
    seen: dict[tuple, str] = {}
    for keyid in keyids:
        key = keys.get(keyid)
        if key is None:
            continue
        value = _key_value(key)
        if value in seen:
            raise refuse(filename, f"role {show(role)} lists one key under two key ids ({seen[value][:16]}... and "
                         f"{keyid[:16]}...), so it would count twice towards the threshold",
                         "the vendor must list each key once")
        seen[value] = keyid


def refuse_duplicate_root_keys(refuse, filename: str, root: Root) -> None:
    for role_name, role in root.roles.items():
        refuse_duplicate_key_values(refuse, filename, role_name, role.keyids, root.keys)


def root_versions(names) -> list[int]:
    """Root versions present among file names (``N.root.json``)."""
    out = []
    for n in names:
        head, _, rest = n.partition(".")
        if rest == "root.json" and head.isdigit() and not head.startswith("0"):
            out.append(int(head))
    return sorted(out)


def trusted_state_from(lookup: MetadataLookup, latest_root_version: int) -> TrustedState:
    """Rebuild the trusted state from a published tree (the store).

    ``latest_root_version`` is the newest ``N.root.json`` there; every root in
    the tree was verified on its way in.  ``timestamp.json`` names the
    snapshot version, the snapshot names each targets role's version.
    """
    root = lookup(f"{latest_root_version}.root.json", MAX_LENGTH["root"])
    if root is None:
        raise AirlockError(f"the published tree lacks {latest_root_version}.root.json: "
                           "the repository is damaged; run `airlock repo show` and re-pin it")
    state = TrustedState(root=root)
    ts = lookup("timestamp.json", MAX_LENGTH["timestamp"])
    if ts is None:
        return state
    state.roles["timestamp"] = ts
    snap_version = Metadata[Timestamp].from_bytes(ts).signed.snapshot_meta.version
    snap = lookup(f"{snap_version}.snapshot.json", MAX_LENGTH["snapshot"])
    if snap is None:
        return state
    state.roles["snapshot"] = snap
    for filename, meta in Metadata[Snapshot].from_bytes(snap).signed.meta.items():
        role = filename[: -len(".json")]
        data = lookup(role_filename(meta.version, role), MAX_LENGTH["targets"])
        if data is not None:
            state.roles[role] = data
    return state


@dataclass
class RoleSummary:
    """One role as a security officer audits it: who may sign, who did."""

    name: str
    version: int
    expires: datetime
    keyids: list[str]
    keytypes: dict[str, str]  # keyid -> "keytype/scheme"
    threshold: int
    signed_by: list[str]  # key ids whose signature on the current file verifies
    delegator: str | None = None
    paths: list[str] | None = None


def describe_role(name: str, md: Metadata, delegator, delegator_name: str) -> RoleSummary:
    """Summarise role ``name`` (its metadata ``md``) as ``delegator`` (a
    Root or Targets) delegates it."""
    role = delegator.get_delegated_role(name)
    keys = delegator.keys if hasattr(delegator, "keys") else delegator.delegations.keys
    keyids = sorted(getattr(role, "keyids", None) or [])
    paths = list(getattr(role, "paths", None) or getattr(role, "path_hash_prefixes", None) or []) or None
    return RoleSummary(
        name=name, version=md.signed.version, expires=md.signed.expires, keyids=keyids,
        keytypes={k: f"{keys[k].keytype}/{keys[k].scheme}" for k in keyids if k in keys},
        threshold=role.threshold, signed_by=valid_signers(md, keyids, keys),
        delegator=delegator_name, paths=paths,
    )
