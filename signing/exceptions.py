"""Every error Airlock raises on purpose.

Each message says what is wrong and what to do about it, so that the CLI can
print it as one line, the API can return it as JSON and the console can show
it as a page.  The hierarchy starts here, in the lowest layer; ``server`` and
``appliance`` re-export it.
"""

from collections.abc import Mapping
from types import MappingProxyType


class AirlockError(Exception):
    """Base of every error Airlock raises on purpose.

    Like python-tuf's ``DownloadHTTPError.status_code``, each error carries
    what a caller needs to answer it: ``status`` (HTTP) and ``code`` (the
    short, stable machine-readable name the appliance's API answers with,
    ``{"error": code, "message": ...}``).  Subclasses override both as class
    attributes; ``extra`` holds more JSON fields for the answer (e.g.
    ``retry_after``), set per instance by the subclasses that have any.
    """

    status: int = 400  # HTTP status
    code: str = "bad_request"
    extra: Mapping[str, object] = MappingProxyType({})


class VerificationError(AirlockError):
    """TUF verification failed: the bundle is not what the vendor signed."""


class UnsafeBundleError(AirlockError):
    """The bundle's files cannot be read safely (links, odd names, sizes)."""


class UnsafeNameError(UnsafeBundleError):
    """A target path or role name could escape the repository folder."""


class RepositoryNameError(AirlockError):
    """A repository name breaks the one naming rule (:func:`signing.paths.check_repo_name`)."""


class KeyStoreError(AirlockError):
    """A key file cannot be created, read or decrypted."""


class WorkspaceError(AirlockError):
    """The vendor's signing workspace is missing or in the wrong state."""


class ThresholdError(WorkspaceError):
    """Metadata does not yet carry enough signatures to be published."""
