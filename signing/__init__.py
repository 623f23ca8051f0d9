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

__all__ = [
    "AirlockError",
    "KeyStoreError",
    "ThresholdError",
    "UnsafeBundleError",
    "UnsafeNameError",
    "VerificationError",
    "WorkspaceError",
]
