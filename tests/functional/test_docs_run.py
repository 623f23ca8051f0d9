"""The docs' code works as written.

A fenced block with ``<!-- run: NAME -->`` on the line before it is run
here by the test for NAME, against real things (a served repository, a
home); every marked block has its test.  Every ``airlock ...`` command line
in the docs' code blocks and command headings parses with the real CLI: a
renamed command or option fails the suite."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from appliance.cli import cli
from tests.conftest import pin, run_airlock
from tests.support.server import airlock_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARKED = re.compile(r"^<!-- run: ([\w.-]+) -->\n```\w*\n(.*?)^```", re.S | re.M)
RUN = {"python-tuf": "device-integration.md", "airlock.toml": "operator-guide.md", "first-steps": "operator-guide.md",
       "install": "install.md", "first-appliance": "install.md"}  # the last two: tests/functional/test_dist.py


def block(name: str) -> str:
    found = dict(MARKED.findall((DOCS / RUN[name]).read_text()))
    assert name in found, f"docs/{RUN[name]} lost its block marked <!-- run: {name} -->"
    return found[name]


def test_every_marked_block_is_run():
    for doc in DOCS.glob("*.md"):
        for name, _ in MARKED.findall(doc.read_text()):
            assert RUN.get(name) == doc.name, f"docs/{doc.name}: no test runs the block marked {name}"


def substitute(code: str, replacements: dict[str, str]) -> str:
    for placeholder, value in replacements.items():
        assert placeholder in code, f"the block no longer says {placeholder}"
        code = code.replace(placeholder, value)
    return code


def test_python_tuf_snippet_fetches_a_verified_target_first_from_the_factory_root_then_from_the_cache(
        airlock, sim, home, tmp_path):
    firmware = b"plc-x firmware 1.2.0" * 1000
    sim.add_target("plc-x/plc-x-1.2.0.bin", firmware, hardware=("plc-x",), version="1.2.0")
    sim.publish()
    factory_root = tmp_path / "acme-root.json"
    factory_root.write_bytes(sim.first_root())
    sim.rotate("root")  # the device was made before a root rotation: it walks the chain
    sim.publish()
    assert pin(airlock, sim, tmp_path, root=factory_root.read_bytes()).code == 0
    assert airlock("import", sim.write_bundle(tmp_path / "usb")).code == 0
    device = tmp_path / "device"
    with airlock_server(home) as base:
        code = substitute(block("python-tuf"), {"http://appliance:8080": base, "/var/lib/device": str(device),
                                                "/usr/share/device/acme-root.json": str(factory_root)})
        for run in ("first run", "from the cache"):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, (run, proc.stderr)
            assert proc.stdout.startswith("verified plc-x/plc-x-1.2.0.bin: "), (run, proc.stdout)
    downloaded = Path(proc.stdout.split(": ", 1)[1].strip())
    assert downloaded.read_bytes() == firmware
    assert (device / "tuf" / "root.json").exists()


def test_first_steps_of_the_operator_guide_pin_import_and_show(sim, tmp_path):
    sim.add_target("plc-x/plc-x-1.2.0.bin", b"firmware" * 1000, version="1.2.0")
    sim.publish()
    media = sim.write_bundle(tmp_path / "usb")
    work = tmp_path / "work"
    work.mkdir()
    (work / "admin-password").write_text("a long admin password\n")
    root = sim.first_root()
    (work / "acme-1.root.json").write_bytes(root)
    home = tmp_path / "var-lib-airlock"
    script = substitute(block("first-steps"), {"/var/lib/airlock": str(home), "/media/usb": str(media)})
    env = dict(os.environ, FINGERPRINT=hashlib.sha256(root).hexdigest(),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("AIRLOCK_HOME", None)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for expect in ("created admin admin", "pinned acme: root version 1", "imported: acme", "repository acme",
                   "plc-x/plc-x-1.2.0.bin"):
        assert expect in proc.stdout, (expect, proc.stdout)


def test_example_airlock_toml_is_taken_as_it_stands(home):
    (home / "airlock.toml").write_text(block("airlock.toml"))
    r = run_airlock(home, "settings")
    assert r.code == 0, r.err
    for line in block("airlock.toml").splitlines():
        key, value = (part.strip() for part in line.split("=", 1))
        assert f"{key} = {value.strip(chr(34))}\n" in r.out


# --- every airlock command line in the docs parses --------------------------

FENCED = re.compile(r"^```\w*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(airlock [^`]+)`")
AS_USER = re.compile(r"^(?:runuser|sudo) -u \w+ (?:-- )?")


def documented_command_lines() -> list[tuple[str, str]]:
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text()
        for body in FENCED.findall(text):
            for line in body.splitlines():
                line = line.strip().removeprefix("$ ")
                line = AS_USER.sub("", line).removesuffix("\\").strip()  # runuser -u airlock -- airlock ...
                if line.startswith("airlock "):
                    found.append((doc.name, line))
        for span in INLINE.findall(FENCED.sub("", text)):
            found.append((doc.name, span))
    return found


def as_arguments(line: str) -> list[str] | None:
    """A synopsis as arguments: ``[--json]`` becomes ``--json``, ``a|b`` becomes
    ``a``; None for a line that names no one command (``airlock devices ...``)."""
    line = line.split(" #", 1)[0].replace("[", " ").replace("]", " ")
    words = [w.split("|", 1)[0] for w in shlex.split(line)][1:]
    if not words or words[-1] in ("...", "…") or any(w.startswith("<") for w in words):
        return None
    return [w for w in words if w not in ("...", "…")]


def command_line_problem(args: list[str]) -> str | None:
    """What is wrong with ``airlock ARGS``: an unknown command or option."""
    command: click.Command = cli
    words = list(args)
    while isinstance(command, click.Group) and words:
        if words[0].startswith("-"):  # the group's own option (--home DIR)
            option = next((p for p in command.params if words[0] in p.opts), None)
            if option is None:
                return f"no option {words[0]} in {command.name}"
            del words[:1 if getattr(option, "is_flag", False) else 2]
            continue
        name = words.pop(0)
        if name not in command.commands:
            return f"no command {name!r} in {command.name}"
        command = command.commands[name]
    if isinstance(command, click.Group):
        return None  # a group named in prose (`airlock devices`)
    options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    for word in words:
        if word.startswith("-") and word != "-" and word.split("=", 1)[0] not in options:
            return f"no option {word} in {command.name}"
    return None


def test_every_documented_command_line_parses():
    lines = documented_command_lines()
    assert len(lines) > 40  # the guides were read
    wrong = []
    for doc, line in lines:
        args = as_arguments(line)
        problem = args is not None and command_line_problem(args)
        if problem:
            wrong.append(f"docs/{doc}: {line}: {problem}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("line", ["airlock repo shw acme", "airlock import usb1 --hme H", "airlock devices lst",
                                  "airlock --hme H repo list"])
def test_a_wrong_command_line_is_caught(line):
    assert command_line_problem(as_arguments(line))
