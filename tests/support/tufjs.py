"""tuf-js, an independent TUF client, installed from npm into a cache folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

TUF_JS_VERSION = "5.0.1"  # 6.x needs Node >= 22
CACHE = Path(os.environ.get("AIRLOCK_TEST_CACHE", Path(__file__).resolve().parents[2] / ".cache")) / "tuf-js"
CLIENT = Path(__file__).with_name("tufjs_client.mjs")


def ensure_tufjs() -> Path:
    """Install tuf-js once; returns the folder whose node_modules has it."""
    marker = CACHE / "node_modules" / "tuf-js" / "package.json"
    if marker.exists() and json.loads(marker.read_text())["version"] == TUF_JS_VERSION:
        return CACHE
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the tuf-js tests: `make test` installs them (tests/prereqs.sh)")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "package.json").write_text(json.dumps({"name": "airlock-tufjs-cache", "private": True, "type": "module"}))
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"tuf-js@{TUF_JS_VERSION}"],
                   cwd=CACHE, check=True, timeout=300)
    return CACHE


def fetch_with_tufjs(root: Path, metadata_dir: Path, base_url: str, target: str, out_dir: Path) -> dict:
    folder = ensure_tufjs()
    script = folder / CLIENT.name
    shutil.copyfile(CLIENT, script)  # so that `import 'tuf-js'` resolves in the cache folder
    proc = subprocess.run(["node", str(script), str(root), str(metadata_dir), base_url, target, str(out_dir)],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"tuf-js printed nothing: {proc.stderr}")
    return json.loads(lines[-1])


REPO_SCRIPT = Path(__file__).with_name("tufjs_repo.mjs")


def build_repo_with_tufjs(out_dir: Path, repo: str) -> dict:
    """A vendor repository and two bundles written by tufjs_repo.mjs with
    tuf-js's own models (another TUF implementation); what it made."""
    folder = ensure_tufjs()
    script = folder / REPO_SCRIPT.name
    shutil.copyfile(REPO_SCRIPT, script)  # so that `import '@tufjs/models'` resolves in the cache folder
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["node", str(script), str(out_dir), repo], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"tufjs_repo.mjs failed: {proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
