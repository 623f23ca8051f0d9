"""The workspace makes real signed metadata that python-tuf's client accepts."""

import json
import shutil
import stat
import tarfile

import pytest
from tuf.api.metadata import Metadata

from signing.exceptions import ThresholdError, UnsafeNameError, WorkspaceError
from signing.keys import load_signer
from signing.workspace import Workspace

from .conftest import PASSPHRASE  # noqa: F401  (documented passphrase of every test key)
