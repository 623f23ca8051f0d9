"""Keys and TUF metadata: the vendor's signing tool and the verifier.

Imports only the standard library, cryptography, tuf and securesystemslib:
no web framework, database or network code.
"""

from signing.exceptions import (
    AirlockError,
    KeyStoreError,
    ThresholdError,
    UnsafeBundleError,
    UnsafeNameError,
    VerificationError,
    WorkspaceError,
)
from signing.keys import generate_signer, load_public_key, load_signer, save_key, save_public_key
from signing.workspace import Workspace

__all__ = [
    "AirlockError",
    "KeyStoreError",
    "ThresholdError",
    "UnsafeBundleError",
    "UnsafeNameError",
    "VerificationError",
    "Workspace",
    "WorkspaceError",
    "generate_signer",
    "load_public_key",
    "load_signer",
    "save_key",
    "save_public_key",
]
