"""Fixtures for the signing tests: cheap key encryption, workspaces, and a
real python-tuf client that reads a repository from a folder."""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

import signing.keys
from signing.keys import load_signer
from signing.workspace import Workspace

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    """Key files made in tests use a tiny scrypt cost (the file records it)."""
    monkeypatch.setattr(signing.keys, "SCRYPT_N", 2**8)


class DirFetcher(FetcherInterface):
    """Serves ``http://repo/metadata/`` and ``http://repo/targets/`` from a
    repository folder, answering 404 for anything missing, as a web server."""

    BASE = "http://repo/"

    def __init__(self, repo_dir: Path):
        self.repo_dir = Path(repo_dir)
        self.fetched: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(self.BASE):
            raise DownloadHTTPError(f"unexpected URL {url}", 404)
        rel = urllib.parse.unquote(url[len(self.BASE):])
        path = self.repo_dir / rel
        if ".." in rel.split("/") or not path.is_file():
            raise DownloadHTTPError(f"{rel} not found", 404)
        self.fetched.append(rel)
        return iter([path.read_bytes()])


@pytest.fixture
def tuf_client(tmp_path):
    """make(repo_dir, bootstrap_root_bytes) -> a fresh ngclient Updater."""
    counter = itertools.count()

    def make(repo_dir: Path, bootstrap: bytes) -> Updater:
        n = next(counter)
        meta_dir = tmp_path / f"client-{n}" / "metadata"
        target_dir = tmp_path / f"client-{n}" / "targets"
        meta_dir.mkdir(parents=True)
        target_dir.mkdir(parents=True)
        return Updater(
            str(meta_dir),
            DirFetcher.BASE + "metadata/",
            str(target_dir),
            DirFetcher.BASE + "targets/",
            fetcher=DirFetcher(repo_dir),
            bootstrap=bootstrap,
        )

    return make


@pytest.fixture
def make_workspace(tmp_path):
    counter = itertools.count()

    def make(name: str = "acme", **kwargs) -> Workspace:
        kwargs.setdefault("passphrase", PASSPHRASE)
        return Workspace.create(tmp_path / f"ws-{next(counter)}", name, **kwargs)

    return make


@pytest.fixture
def signers_of():
    """signers_of(ws, "root-1", ...) -> signers for keys/<name>.key (all keys when no names)."""

    def load(ws: Workspace, *names: str) -> list:
        paths = [ws.path / "keys" / f"{n}.key" for n in names] or sorted((ws.path / "keys").glob("*.key"))
        return [load_signer(p, PASSPHRASE) for p in paths]

    return load


@pytest.fixture
def fetch_target():
    """fetch_target(updater, path) -> bytes: refresh, find and download as a device would."""

    def fetch(updater: Updater, target_path: str) -> bytes:
        updater.refresh()
        info = updater.get_targetinfo(target_path)
        assert info is not None, f"client does not find {target_path}"
        return Path(updater.download_target(info)).read_bytes()

    return fetch


@pytest.fixture
def firmware(tmp_path) -> Path:
    path = tmp_path / "fw-1.0.0.bin"
    path.write_bytes(b"\x7fELF firmware 1.0.0 " * 100)
    return path
