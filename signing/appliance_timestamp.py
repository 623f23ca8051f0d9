"""Timestamps the appliance signs with its own key, when a vendor's root
authorizes it (``airlock-sign authorize-appliance``).

Pure TUF, no web or database code: :func:`authorization` reads a root,
:func:`resign_timestamp` builds a new ``timestamp.json`` that points at the
vendor's snapshot (its ``snapshot.json`` meta, version, length and hashes,
copied from the vendor's own timestamp: the appliance never names a snapshot
the vendor did not sign), and :func:`check_as_client` runs python-tuf's
client code on the result, from the root and the timestamp devices already
hold, before anything is published.

Versions: devices hold the highest timestamp version they have seen, and a
TUF client refuses a lower one (rollback).  The appliance therefore signs
version ``max(every version it has served) + 1``; a later vendor timestamp
whose version is at or below that is verified against the vendor's previous
timestamp (its snapshot must not roll back) and re-signed the same way, so
devices never see a version go backwards.
"""

from __future__ import annotations

import contextlib
import copy
from datetime import datetime

from securesystemslib.signer import Signer
from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Root, Timestamp
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from signing.exceptions import VerificationError


def authorization(root: Root, keyid: str) -> str | None:
    """None when ``keyid`` alone may sign ``root``'s timestamp role; else
    why not, as a phrase ("... : ask the vendor ...")."""
    role = root.roles["timestamp"]
    if keyid not in role.keyids:
        return (f"root version {root.version} does not list the appliance's timestamp key {keyid[:16]} for "
                "timestamp: the vendor adds it with `airlock-sign authorize-appliance` (`airlock keys show "
                "--timestamp` prints it)")
    if role.threshold > 1:
        return (f"root version {root.version} lists the appliance's timestamp key, but timestamp needs "
                f"{role.threshold} signatures and the appliance holds one key: the vendor sets the threshold to 1 "
                "(`airlock-sign authorize-appliance --threshold 1`) for the appliance to re-sign alone")
    return None


def still_held(root: Root, timestamp: bytes) -> bool:
    """Whether a device keeps ``timestamp`` as its rollback baseline once it
    trusts ``root``: only while it still verifies under it (a TUF client
    drops a timestamp whose keys the new root rotated away, and then takes
    any version)."""
    try:
        md = Metadata[Timestamp].from_bytes(timestamp)
        root.verify_delegate("timestamp", md.signed_bytes, md.signatures)
    except tuf_exceptions.UnsignedMetadataError:
        return False
    return True


def resign_timestamp(vendor_timestamp: bytes, *, version: int, expires: datetime, signer: Signer) -> bytes:
    """A new timestamp, ``version``, valid until ``expires``, naming the
    very snapshot ``vendor_timestamp`` names, signed by ``signer``."""
    vendor = Metadata[Timestamp].from_bytes(vendor_timestamp).signed
    signed = Timestamp(version=version, spec_version=vendor.spec_version,
                       expires=expires.replace(microsecond=0), snapshot_meta=copy.deepcopy(vendor.snapshot_meta))
    md = Metadata(signed)
    md.sign(signer)
    return md.to_bytes()


def check_as_client(root: bytes, held_timestamp: bytes | None, new_timestamp: bytes, now: datetime) -> None:
    """Refuse ``new_timestamp`` unless a TUF client holding ``root`` and
    ``held_timestamp`` would take it at ``now`` (signature threshold, no
    rollback of its version or of the snapshot's, not expired)."""
    tset = TrustedMetadataSet(root, EnvelopeType.METADATA)
    tset.reference_time = now
    if held_timestamp is not None:
        held = Metadata[Timestamp].from_bytes(held_timestamp).signed
        new = Metadata[Timestamp].from_bytes(new_timestamp).signed
        if new.version <= held.version:  # whether or not the held one still verifies under this root
            raise VerificationError(f"the timestamp the appliance signed has version {new.version}, not above "
                                    f"version {held.version} devices hold; nothing was published")
        # expired, or signed by keys this root no longer lists: a client then only keeps its version
        with contextlib.suppress(tuf_exceptions.RepositoryError):
            tset.update_timestamp(held_timestamp)
    try:
        tset.update_timestamp(new_timestamp)
    except tuf_exceptions.RepositoryError as exc:
        raise VerificationError(f"the timestamp the appliance signed would not verify on a device ({exc}); "
                                "nothing was published") from None


def final_root_if_only_expired(trusted_root: bytes, new_roots: list[bytes], previous_timestamp: bytes | None,
                               timestamp: bytes, now: datetime) -> Root | None:
    """The final root (after ``new_roots``, each verified by the one before)
    when ``timestamp`` verifies under it in every way but one: it has
    expired (a delivery that took longer than the vendor's timestamp lives);
    None otherwise, leaving every refusal to the importer's verifier."""
    try:
        tset = TrustedMetadataSet(trusted_root, EnvelopeType.METADATA)
        tset.reference_time = now
        for data in new_roots:
            tset.update_root(data)
    except Exception:  # noqa: BLE001 - any refusal is the verifier's to explain
        return None
    if tset.root.is_expired(now):
        return None
    if previous_timestamp is not None:
        with contextlib.suppress(Exception):  # the vendor's previous one guards against rollback, expired or not
            tset.update_timestamp(previous_timestamp)
    try:
        tset.update_timestamp(timestamp)
    except tuf_exceptions.ExpiredMetadataError:
        return tset.root
    except Exception:  # noqa: BLE001
        return None
    return None  # not expired: nothing to do
