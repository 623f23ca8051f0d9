"""Dependencies run one way: appliance -> server -> signing.  The signing
package (the vendor's offline tool and the verifier) pulls in no web
framework, database, mDNS or CLI library."""

import ast
import re
import subprocess
import sys
from pathlib import Path

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


# Persistence lives in the server's domain services: appliance/ calls services
# and gets dataclasses back; it never touches peewee, a model, the database
# proxy or SQL itself.
APPLIANCE = Path(__file__).resolve().parents[2] / "appliance"
# SQL as it is written in this code base: keywords in capitals ("Create the..." in a docstring is not SQL)
_SQL = re.compile(r"^\s*((SELECT|INSERT|UPDATE|DELETE|REPLACE)\s|(CREATE|DROP|ALTER)\s+(TABLE|INDEX)\s)")
_DB_CALLS = {"execute_sql", "raw", "atomic", "transaction", "connection_context"}


def _is_model_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "server" and (parts[-1] == "models" or module == "server.db")


def persistence_uses(source: str, filename: str) -> list[str]:
    """Every way ``source`` reaches the database itself, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("peewee", "playhouse", "sqlite3") or _is_model_module(alias.name):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            names = {a.name for a in node.names}
            if top in ("peewee", "playhouse", "sqlite3") or _is_model_module(node.module):
                if node.module != "server.db" or names - ALLOWED_FROM_DB:
                    found.append(f"{where}: from {node.module} import {', '.join(sorted(names))}")
            elif top == "server" and "database" in names:
                found.append(f"{where}: from {node.module} import database")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _DB_CALLS:
            found.append(f"{where}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "database" and isinstance(node.value, ast.Name) \
                and node.value.id in ("server", "models", "db"):
            found.append(f"{where}: {node.value.id}.database")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.match(node.value):
            found.append(f"{where}: SQL {node.value[:40]!r}")
    return found


# server.db's schema helpers are how the CLI checks and upgrades the schema;
# its connection (the proxy) and anything peewee are not for appliance/.
ALLOWED_FROM_DB = {"check_schema", "check_not_newer", "migrate", "SchemaError", "DatabaseError"}


def test_appliance_reaches_the_database_only_through_server_services():
    found = []
    for path in sorted(APPLIANCE.rglob("*.py")):
        found += persistence_uses(path.read_text(), str(path.relative_to(APPLIANCE.parent)))
    assert not found, "appliance/ must call server services, not the database:\n" + "\n".join(found)


def test_the_persistence_scan_finds_each_kind_of_use():
    """The scan itself: each forbidden use is found, and a service call is not."""
    samples = {
        "import peewee": 1, "from peewee import fn": 1, "from server.models import Repository": 1,
        "from server.imports.models import ImportRecord": 1, "from server import database": 1,
        "from server.db import open_database": 1, "import server.models": 1,
        "db.execute_sql('x')": 1, "Thing.raw('x')": 1, "database.atomic('IMMEDIATE')": 1,
        "q = 'SELECT id FROM device'": 1, "q = f'INSERT INTO t ({cols})'": 1, "x = server.database": 1,
        "from server.db import check_schema": 0, "from server.imports import services": 0,
        "services.record_import(x)": 0, "'selected 3 devices'": 0,
    }
    for source, expected in samples.items():
        assert len(persistence_uses(source, "sample.py")) == expected, source
