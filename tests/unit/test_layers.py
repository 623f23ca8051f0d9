"""Dependencies run one way: appliance -> server -> signing.  The signing
package (the vendor's offline tool and the verifier) pulls in no web
framework, database, mDNS or CLI library."""

import subprocess
import sys

FORBIDDEN_FOR_SIGNING = ("flask", "werkzeug", "peewee", "zeroconf", "click", "gunicorn", "server", "appliance")


def imported_top_levels(*modules: str) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print('\\n'.join(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_signing_imports_no_web_database_or_cli_code():
    loaded = imported_top_levels("signing", "signing.verify", "signing.bundle", "signing.workspace",
                                 "signing.keys", "signing.cli")
    assert not loaded & set(FORBIDDEN_FOR_SIGNING), loaded & set(FORBIDDEN_FOR_SIGNING)


def test_server_does_not_import_appliance():
    loaded = imported_top_levels("server", "server.repositories.views", "server.repositories.services",
                                 "server.health", "server.db")
    assert "appliance" not in loaded
    assert "zeroconf" not in loaded  # mDNS is host integration: appliance/
