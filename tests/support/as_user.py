"""Run the `airlock` CLI as another user, for the permission tests:
``python -m tests.support.as_user USER ARGS...`` (as root).

Python and the checkout may sit where that user may not read (a pyenv under
/root, say), so every module is imported first, as root, and only then does
the process become USER (``os.setuid``) and run ``airlock ARGS...``: from
there on, every file the command opens is opened as USER.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pwd
import sys

SKIP = {"server.wsgi", "appliance.demo"}  # build an app or a scratch folder on import
# imported lazily by the standard library (reading package data, say)
LAZY = ["importlib.readers", "importlib.resources.readers", "getpass", "grp", "pwd", "difflib", "_strptime",
        "encodings.idna", "encodings.ascii", "encodings.latin_1"]


def main() -> int:
    user, argv = sys.argv[1], sys.argv[2:]
    for package in ("signing", "server", "appliance"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if info.name not in SKIP and not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    for name in LAZY:
        importlib.import_module(name)
    from appliance.cli import main as airlock

    account = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.environ["HOME"] = "/nonexistent"
    return airlock(argv)


if __name__ == "__main__":
    sys.exit(main())
