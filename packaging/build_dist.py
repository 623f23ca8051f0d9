"""``make dist``: build the offline installation folder and its archive.

On a connected machine with CPython 3.11 (Debian 12's Python), this writes
``OUT/airlock-VERSION/`` and ``OUT/airlock-VERSION.tar.gz`` holding
everything an appliance with no network needs:

- ``wheels/``: Airlock's wheel, the wheel of every dependency (not the test
  ones) built or downloaded for this interpreter and platform, and pip's own
  wheel (Debian's ``python3`` may lack ``ensurepip``: ``install.sh`` makes the
  venv ``--without-pip`` and runs pip from its wheel);
- ``systemd/``, ``udev/``, ``nginx/`` (every ``docs/nginx-*.conf``) and
  ``doc/`` (the guides the units point to);
- ``install.sh`` (``packaging/install.sh``), ``BUILD-INFO`` (version, build,
  Python) and ``SHA256SUMS``, which ``install.sh`` checks before it changes
  anything (a stick carried across a plant may be damaged).

Only the standard library: it runs before any venv exists.  ``--source``
builds another checkout (the tests build an older commit's release from
``git archive`` with it); ``--wheel-cache`` keeps wheels between builds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = (3, 11)  # Debian 12's: the wheels are built for the interpreter that runs this


class DistError(Exception):
    """The dist cannot be built; the message says why and what to do."""


def project_version(source: Path) -> str:
    with open(source / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def build_id(source: Path) -> str:
    """The commit the build comes from (``-dirty`` with local changes), or
    ``nogit`` for a source tree outside git (an archive)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if git("rev-parse", "--show-toplevel") != str(source.resolve()):
            return "nogit"
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise DistError(f"`{' '.join(cmd)}` failed (this step needs the network or a pip index):\n{tail}")


# setuptools builds in the source's build/, where files of deleted modules
# linger and would ship: build from a clean copy of the tree instead
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".cache",
                                    ".mypy_cache", ".ruff_cache", ".pytest_cache", "demo", "node_modules")


def collect_wheels(source: Path, wheels: Path, cache: Path | None) -> None:
    """Airlock's wheel and every runtime dependency's, plus pip's own."""
    target = cache or wheels
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="airlock-dist-") as tmp:
        clean = Path(tmp) / "source"
        shutil.copytree(source, clean, ignore=NOT_SOURCE, symlinks=True)
        # no -e, no extras: the test dependencies stay out
        pip("wheel", "--quiet", "--wheel-dir", str(target), "--find-links", str(target), str(clean))
    pip("download", "--quiet", "--only-binary", ":all:", "--no-deps", "--dest", str(target),
        "--find-links", str(target), "pip")
    if cache is not None:
        # only what this source needs: resolve against the cache alone
        wheels.mkdir(parents=True, exist_ok=True)
        airlock_wheels = sorted(cache.glob("airlock-*.whl"), key=lambda p: p.stat().st_mtime)
        pip("wheel", "--quiet", "--no-index", "--find-links", str(cache), "--wheel-dir", str(wheels),
            str(airlock_wheels[-1]) if airlock_wheels else str(source))
        for pip_wheel in sorted(cache.glob("pip-*.whl"))[-1:]:
            shutil.copy2(pip_wheel, wheels)


def copy_files(source: Path, out: Path) -> None:
    for folder in ("systemd", "udev"):
        (out / folder).mkdir()
        for f in sorted((source / folder).iterdir()):
            if f.is_file():
                shutil.copy2(f, out / folder / f.name)
    (out / "nginx").mkdir()
    for conf in sorted((source / "docs").glob("nginx-*.conf")):  # the snippet, the TLS site ...
        shutil.copy2(conf, out / "nginx" / conf.name)
    (out / "doc").mkdir()
    for f in sorted((source / "docs").glob("*.md")):
        shutil.copy2(f, out / "doc" / f.name)
    # the installer of the tree being built, so an older source gets today's
    # installer only when it has none of its own
    installer = source / "packaging" / "install.sh"
    shutil.copy2(installer if installer.exists() else HERE / "install.sh", out / "install.sh")
    os.chmod(out / "install.sh", 0o755)


def write_sums(out: Path) -> None:
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(out)}\n")
    (out / "SHA256SUMS").write_text("".join(lines))


def build(source: Path, out_dir: Path, cache: Path | None = None) -> Path:
    if sys.version_info[:2] != PYTHON:
        raise DistError(f"build the dist with CPython {PYTHON[0]}.{PYTHON[1]} (Debian 12's), not "
                        f"{sys.version.split()[0]}: the wheels must match the appliance's Python "
                        "(make dist PYTHON=python3.11)")
    source = source.resolve()
    if not (source / "pyproject.toml").exists():
        raise DistError(f"{source} has no pyproject.toml: give the Airlock source folder")
    version = project_version(source)
    name = f"airlock-{version}"
    out = out_dir.resolve() / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    collect_wheels(source, out / "wheels", cache)
    copy_files(source, out)
    built = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / "BUILD-INFO").write_text(f"version={version}\nbuild={build_id(source)}\nbuilt={built}\n"
                                    f"python=cp{PYTHON[0]}{PYTHON[1]}\n")
    write_sums(out)
    archive = out_dir.resolve() / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(out, arcname=name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=HERE.parent, help="Airlock source folder (default: this one)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "dist", help="where to write (default: dist/)")
    parser.add_argument("--wheel-cache", type=Path, default=None, help="folder keeping wheels between builds")
    args = parser.parse_args(argv)
    try:
        out = build(args.source, args.out, args.wheel_cache)
    except DistError as exc:
        print(f"make dist: error: {exc}", file=sys.stderr)
        return 1
    wheels = len(list((out / "wheels").glob("*.whl")))
    print(f"built {out} ({wheels} wheels) and {out}.tar.gz: carry either to the appliance, then "
          f"`sh install.sh` as root there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
