"""Fetching an offered update with python-tuf and handing the verified file
to the install hook.

The appliance says *what* to install; the vendor's signed metadata says
whether a file is genuine.  ngclient checks the whole chain from the
trusted root, then the target's length and every hash, before anything is
written where the hook will look.  The version and hardware the appliance
names must also be the ones the vendor signed."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater, UpdaterConfig

from agent._files import ensure_dir
from agent._http import ResumingFetcher
from agent.exceptions import UnreachableError, UpdateError

logger = logging.getLogger(__name__)
HOOK_REBOOT = 10  # hook exit status: installed, the device reboots into it
# C0 and C1 controls (U+009B is a one-byte CSI), zero-width and bidirectional overrides: never sent, logged or printed
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~/-]{0,255}$")


@dataclass(frozen=True)
class Offer:
    """The `update` of a check-in answer."""

    release_id: int
    repository: str
    target_path: str
    version: str
    metadata_url: str
    targets_url: str

    @classmethod
    def from_answer(cls, update: dict) -> Offer:
        try:
            offer = cls(int(update["release_id"]), str(update["repository"]), str(update["target_path"]),
                        str(update["version"]), str(update["metadata_url"]), str(update["targets_url"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UpdateError(f"the appliance's update offer is malformed: {exc}") from None
        for url in (offer.metadata_url, offer.targets_url):
            if not _URL_PATH.match(url) or ".." in url:
                raise UpdateError(f"the appliance's update offer names an odd URL path {url!r}")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", offer.repository):
            raise UpdateError(f"the appliance's update offer names an odd repository {offer.repository!r}")
        return offer


def reason_text(text: str, limit: int = 1000) -> str:
    """A report reason, or text from the appliance for a log or terminal: no
    control or bidirectional-override characters, at most ``limit`` characters."""
    return _CONTROL.sub(" ", text).strip()[:limit] or "unknown"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "target"


def fetch_verified(base_url: str, offer: Offer, metadata_dir: Path, download_dir: Path, root: bytes | None,
                   hardware: str, fetcher: ResumingFetcher) -> Path:
    """Refresh the repository's metadata, check the offer against the signed
    target, download it (resuming a ``.part``) and return the verified file.
    Raises UpdateError (report it) or UnreachableError (try again later)."""
    ensure_dir(metadata_dir)
    ensure_dir(download_dir)
    bootstrap = None if (metadata_dir / "root.json").exists() else root
    if bootstrap is None and not (metadata_dir / "root.json").exists():
        raise UpdateError(f"no trusted root for repository {offer.repository!r}: configure root_file")
    try:
        updater = Updater(str(metadata_dir), base_url + offer.metadata_url, str(download_dir),
                          base_url + offer.targets_url, fetcher=fetcher,
                          config=UpdaterConfig(app_user_agent="airlock-agent"), bootstrap=bootstrap)
        updater.refresh()
        info = updater.get_targetinfo(offer.target_path)
    except tuf_errors.DownloadHTTPError as exc:
        raise UpdateError(f"TUF metadata of {offer.repository} could not be fetched: {exc}") from None
    except tuf_errors.DownloadError as exc:
        raise UnreachableError(f"TUF metadata download failed: {exc}: {exc.__cause__!r}") from None
    except (tuf_errors.RepositoryError, ValueError) as exc:
        raise UpdateError(f"TUF refused the metadata of {offer.repository}: {type(exc).__name__}: {exc}") from None
    if info is None:
        raise UpdateError(f"{offer.target_path} is not in the signed metadata of {offer.repository}")
    custom = info.custom if isinstance(info.custom, dict) else {}
    if hardware not in (custom.get("hardware") or []):
        raise UpdateError(f"the signed metadata of {offer.target_path} does not list hardware {hardware}")
    if custom.get("version") != offer.version:
        raise UpdateError(f"the appliance offered version {offer.version} but the signed metadata of "
                          f"{offer.target_path} says {custom.get('version')!r}")

    digest = next(iter(info.hashes.values()))
    final = download_dir / _safe_name(f"{digest}.{offer.target_path.rsplit('/', 1)[-1]}")
    if updater.find_cached_target(info, str(final)):
        return final
    part = final.with_name(final.name + ".part")
    staged = final.with_name("." + final.name + ".verified")
    fetcher.resume_into(base_url + offer.targets_url, part)
    received, resumed = fetcher.received_bytes, fetcher.resumed_bytes
    try:
        updater.download_target(info, str(staged))
    except (tuf_errors.RepositoryError, tuf_errors.DownloadLengthMismatchError) as exc:
        part.unlink(missing_ok=True)  # never resume from bytes that failed verification
        staged.unlink(missing_ok=True)
        raise UpdateError(f"{offer.target_path} failed TUF verification ({type(exc).__name__}): {exc}") from None
    except tuf_errors.DownloadHTTPError as exc:
        raise UpdateError(f"{offer.target_path} could not be downloaded: {exc}") from None
    except tuf_errors.DownloadError as exc:
        raise UnreachableError(f"download of {offer.target_path} interrupted, kept for resuming: {exc}") from None
    finally:
        fetcher.resume_into("", None)
    logger.info("downloaded %s: %d bytes over the network, %d kept from an earlier try", offer.target_path,
                fetcher.received_bytes - received, fetcher.resumed_bytes - resumed)
    os.replace(staged, final)
    part.unlink(missing_ok=True)
    # The file the hook gets is checked once more where it lies now.
    if updater.find_cached_target(info, str(final)) is None:
        final.unlink(missing_ok=True)
        raise UpdateError(f"{final} changed after verification")
    return final


def run_hook(hook: str, path: Path, offer: Offer, timeout: float) -> tuple[int, str]:
    """Run ``HOOK VERIFIED_FILE``; returns (exit status, the end of its output)."""
    env = dict(os.environ, AIRLOCK_TARGET=offer.target_path, AIRLOCK_VERSION=offer.version,
               AIRLOCK_RELEASE_ID=str(offer.release_id), AIRLOCK_REPOSITORY=offer.repository)
    try:
        done = subprocess.run([*shlex.split(hook), str(path)], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"install hook timed out after {timeout:.0f} s"
    except OSError as exc:
        return -1, f"install hook could not run: {exc.strerror}"
    output = (done.stderr or done.stdout or b"").decode(errors="replace")[-500:]
    if done.returncode:
        logger.warning("install hook exited %d: %s", done.returncode, output.strip())
    return done.returncode, output
