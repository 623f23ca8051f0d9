"""Only agent/_http.py speaks HTTP: a scan of every module's imports under
agent/ (python-tuf keeps its HTTP in one small module the same way)."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).parents[3] / "agent"
HTTP_MODULE = "_http.py"
# an HTTP library, or python-tuf's fetchers (a FetcherInterface subclass does HTTP)
HTTP = ("urllib3", "urllib.request", "http", "requests", "httpx", "aiohttp", "tuf.ngclient.fetcher",
        "tuf.ngclient._internal")


def http_imports(folder: Path) -> dict[str, set[str]]:
    """module file -> the HTTP modules it imports (anywhere in it, also inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            hits = {n for n in names if any(n == h or n.startswith(h + ".") for h in HTTP)}
            if hits:
                found.setdefault(path.name, set()).update(hits)
    return found


def test_only_the_http_module_imports_an_http_library():
    found = http_imports(AGENT)
    assert set(found) == {HTTP_MODULE}, f"HTTP outside agent/{HTTP_MODULE}: " + str(
        {name: hits for name, hits in found.items() if name != HTTP_MODULE})
    assert {"urllib3", "tuf.ngclient.fetcher"} <= found[HTTP_MODULE]


def test_the_scan_sees_imports_inside_functions(tmp_path):
    (tmp_path / "sneaky.py").write_text("def f():\n    import urllib.request\n    from http import client\n")
    (tmp_path / "fine.py").write_text("import json\nfrom urllib.parse import quote\n")
    assert http_imports(tmp_path) == {"sneaky.py": {"urllib.request", "http", "http.client"}}
