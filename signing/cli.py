"""``airlock-sign``: the vendor's offline signing tool.

A thin shell over :mod:`signing.workspace`, :mod:`signing.keys` and
:mod:`signing.verify`: each subcommand parses its arguments, calls one
service and prints what was done.  Every refusal is one line on stderr,
``airlock-sign: error: <reason>``, with exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import os
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from signing.exceptions import AirlockError, KeyStoreError
from signing.keys import KEY_TYPES, generate_signer, load_public_key, load_signer, save_key, save_public_key
from signing.workspace import Workspace

PROG = "airlock-sign"
PASSPHRASE_ENV = "AIRLOCK_SIGN_PASSPHRASE"
MAX_PASSPHRASE_FILE = 4096  # bytes

logger = logging.getLogger(__name__)


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, instead of argparse's usage dump
        raise _UsageError(message)


def _out(line: str = "") -> None:
    print(line, flush=True)


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def _short(keyid: str) -> str:
    return keyid[:16]


def _fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# passphrases and keys ----------------------------------------------------
def _passphrase(args: argparse.Namespace, *, new: bool = False) -> bytes:
    """From --passphrase-file, else $AIRLOCK_SIGN_PASSPHRASE, else a prompt
    (only on a terminal: a script must never hang on a hidden question)."""
    if getattr(args, "passphrase_file", None):
        try:
            with open(args.passphrase_file, "rb") as f:
                data = f.read(MAX_PASSPHRASE_FILE + 1)
        except OSError as e:
            raise KeyStoreError(f"cannot read passphrase file {args.passphrase_file}: {e.strerror}") from None
        if len(data) > MAX_PASSPHRASE_FILE:
            raise KeyStoreError(f"passphrase file {args.passphrase_file} is too large")
        data = data.removesuffix(b"\n").removesuffix(b"\r")
        if not data:
            raise KeyStoreError(f"passphrase file {args.passphrase_file} is empty")
        return data
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode("utf-8")
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("New key passphrase: " if new else "Key passphrase: ")
        if new and getpass.getpass("Repeat the passphrase: ") != first:
            raise KeyStoreError("the two passphrases differ")
        if not first:
            raise KeyStoreError("an empty passphrase is not allowed")
        return first.encode("utf-8")
    raise KeyStoreError(
        f"no passphrase: use --passphrase-file FILE or set {PASSPHRASE_ENV} "
        "(standard input is not a terminal, so airlock-sign cannot ask)"
    )


def _signers(args: argparse.Namespace) -> list:
    paths = [Path(p) for p in (args.key or [])]
    if getattr(args, "keys_dir", None):
        keys_dir = Path(args.keys_dir)
        if not keys_dir.is_dir():
            raise KeyStoreError(f"{keys_dir} is not a folder")
        paths += sorted(keys_dir.glob("*.key"))
        if not paths:
            raise KeyStoreError(f"{keys_dir} holds no *.key files")
    passphrase = _passphrase(args)
    return [load_signer(p, passphrase) for p in paths]


# argument helpers ----------------------------------------------------------
def _role_numbers(items: Sequence[str] | None, what: str) -> dict[str, int]:
    out = {}
    for item in items or []:
        role, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise _UsageError(f"{what} must be given as ROLE=N (e.g. root=3), not {item!r}")
        out[role.strip()] = int(value)
    return out


def _published_line(ws: Workspace) -> str:
    versions = ws.published_versions()
    return ", ".join(f"{role} v{v}" for role, v in versions.items()) or "nothing"


def _staged_note(ws: Workspace, role: str) -> str:
    for entry in ws.status():
        if entry["role"] == role:
            return f"staged {role} v{entry['version']}"
    return f"staged {role}"


# subcommands ---------------------------------------------------------------
def cmd_init(args) -> int:
    ws = Workspace.create(
        Path(args.dir),
        args.name,
        passphrase=_passphrase(args, new=True),
        key_type=args.key_type,
        key_counts=_role_numbers(args.keys, "--keys"),
        thresholds=_role_numbers(args.threshold, "--threshold"),
        expiry_days=_role_numbers(args.expires, "--expires"),
    )
    root_file = ws.layout.published_file("root", 1)
    _out(f"created workspace {ws.path} for repository {ws.name}")
    for key_file in sorted(ws.layout.keys.glob("*.key")):
        _out(f"  key {key_file.name}: {_short(load_public_key(key_file).keyid)}")
    _out("published version 1 of root, targets, snapshot and timestamp")
    _out(f"root of trust: {root_file}")
    _out(f"sha256 fingerprint: {_fingerprint(root_file)}")
    _out(
        f"pin it on the appliance: airlock repo add {ws.name} --root {root_file.name} "
        "--fingerprint <the fingerprint above>"
    )
    return 0


def cmd_keygen(args) -> int:
    out = Path(args.out)
    pub = out.with_suffix(".pub") if out.suffix == ".key" else out.with_name(out.name + ".pub")
    for p in (out, pub):
        if p.exists():
            raise KeyStoreError(f"{p} already exists: refusing to overwrite a key file")
    signer = generate_signer(args.key_type)
    save_key(signer, out, _passphrase(args, new=True))
    save_public_key(signer.public_key, pub)
    _out(f"wrote private key {out} (encrypted; keep it offline)")
    _out(f"wrote public key {pub} (hand it to the release engineer)")
    _out(f"key id {signer.public_key.keyid}")
    return 0


def cmd_add_target(args) -> int:
    ws = Workspace.open(args.dir)
    target = ws.add_target(Path(args.file), args.path, hardware=args.hardware, version=args.version, role=args.role)
    _out(
        f"{_staged_note(ws, args.role)}: added {target.path} ({target.length} bytes, sha256 "
        f"{target.hashes['sha256']}) for {', '.join(args.hardware)}, version {args.version}"
    )
    return 0


def cmd_remove_target(args) -> int:
    ws = Workspace.open(args.dir)
    ws.remove_target(args.path, role=args.role)
    _out(f"{_staged_note(ws, args.role)}: removed {args.path}")
    return 0


def _needs_new_keys(args) -> bool:
    return args.keys > 0 if args.keys is not None else not args.public_key


def cmd_delegate(args) -> int:
    ws = Workspace.open(args.dir)
    keyids = ws.delegate(
        args.role,
        args.paths,
        parent=args.parent,
        key_count=args.keys,
        threshold=args.threshold,
        key_type=args.key_type,
        public_keys=[Path(p) for p in args.public_key or []],
        passphrase=_passphrase(args, new=True) if _needs_new_keys(args) else None,
        terminating=args.terminating,
    )
    _out(f"{_staged_note(ws, args.parent)}: delegates {', '.join(args.paths)} to {args.role}")
    _out(f"staged {args.role} v1 with keys {', '.join(_short(k) for k in keyids)} (threshold {args.threshold})")
    return 0


def cmd_rotate(args) -> int:
    ws = Workspace.open(args.dir)
    change = ws.rotate(
        args.role,
        new_key_count=args.keys,
        public_keys=[Path(p) for p in args.public_key or []],
        remove_keyids=args.remove_keyid,
        threshold=args.threshold,
        key_type=args.key_type,
        passphrase=_passphrase(args, new=True) if _needs_new_keys(args) else None,
    )
    _out(f"{args.role}: removed keys {', '.join(_short(k) for k in change['removed']) or 'none'}")
    _out(f"{args.role}: added keys {', '.join(_short(k) for k in change['added']) or 'none'}")
    _out("staged: " + ", ".join(f"{e['role']} v{e['version']}" for e in ws.status()))
    if args.role == "root":
        _out("the new root must be signed by the old root keys and the new ones before publishing")
    return 0


def cmd_authorize_appliance(args) -> int:
    ws = Workspace.open(args.dir)
    change = ws.authorize_timestamp_key(Path(args.key_file), threshold=args.threshold)
    _out(f"timestamp: added the appliance's key {_short(change['keyid'])}; keys "
         f"{', '.join(_short(k) for k in change['keyids'])}, threshold {change['threshold']}")
    if change["threshold"] == 1:
        _out("the appliance may now re-sign timestamp.json on its own between deliveries "
             "(`airlock timestamp refresh`); snapshot and targets stay yours")
    else:
        _out(f"threshold {change['threshold']}: the appliance's key alone cannot sign a valid timestamp, so the "
             "appliance will not re-sign it (threshold 1 lets it)")
    if args.key:
        for role, keyid in ws.sign(_signers(args), roles=["root"]):
            _out(f"signed {role} with key {_short(keyid)}")
    _print_status(ws)
    _out("publish as usual (`airlock-sign publish`), then ship the bundle: the appliance takes the new root")
    return 0


def cmd_expires(args) -> int:
    ws = Workspace.open(args.dir)
    if ws.set_expiry(args.role, args.days):
        _out(f"{_staged_note(ws, args.role)}: expires in {args.days} days")
    else:
        _out(f"{args.role}: each publish from now on makes it valid for {args.days} days")
    return 0


def _print_status(ws: Workspace) -> None:
    entries = ws.status()
    if not entries:
        _out("nothing staged")
    for e in entries:
        checks = "; ".join(
            f"{c['signed']}/{c['threshold']} of the keys in {c['keys_of']}"
            + (f" (needs {c['missing']} more)" if c["missing"] else "")
            for c in e["signatures"]
        )
        _out(f"  {e['role']} v{e['version']} expires {e['expires']}: {checks}{'  ready' if e['ready'] else ''}")


def cmd_sign(args) -> int:
    ws = Workspace.open(args.dir)
    for role, keyid in ws.sign(_signers(args), roles=args.role or None):
        _out(f"signed {role} with key {_short(keyid)}")
    _print_status(ws)
    return 0


def cmd_status(args) -> int:
    ws = Workspace.open(args.dir)
    if args.json:
        doc = {"name": ws.name, "published": ws.published_versions(), "staged": ws.status()}
        _out(json.dumps(doc, indent=2))
        return 0
    _out(f"repository {ws.name}; published: {_published_line(ws)}")
    _print_status(ws)
    return 0


def cmd_publish(args) -> int:
    ws = Workspace.open(args.dir)
    written = ws.publish(_signers(args))
    _out("published " + ", ".join(f"{role} v{v}" for role, v in written.items()))
    if "root" in written:
        _out(f"new root: {ws.layout.published_file('root', written['root'])}")
    return 0


def cmd_bundle(args) -> int:
    ws = Workspace.open(args.dir)
    path = ws.write_bundle(Path(args.dest), fmt=args.format, exclude_from=args.incremental_from)
    _out(f"wrote bundle {path} (repository {ws.name}: {_published_line(ws)})")
    pending = [e["role"] for e in ws.status()]
    if pending:
        _out(f"note: staged changes to {', '.join(pending)} are not in it: publish first")
    return 0


def _bundle_repositories(bundle: Path) -> list[str]:
    """Repository names in a bundle, by a quick look at its names only."""
    names: set[str] = set()

    def note(parts: list[str]) -> None:
        if len(parts) >= 2 and parts[1] == "metadata":
            names.add(parts[0])

    if bundle.is_dir():
        base = bundle / "airlock" if (bundle / "airlock").is_dir() else bundle
        for child in base.iterdir():
            if (child / "metadata").is_dir():
                names.add(child.name)
    elif bundle.is_file():
        try:
            with tarfile.open(bundle, "r:*") as tar:
                for member in tar:
                    parts = member.name.removeprefix("./").split("/")
                    note(parts[1:] if parts[0] == "airlock" and len(parts) > 2 else parts)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise AirlockError(f"cannot read bundle {bundle}: {e}") from None
    else:
        raise AirlockError(f"bundle {bundle} does not exist")
    return sorted(names)


def cmd_verify(args) -> int:
    bundle = Path(args.bundle)
    pinned: dict[str, Path] = {}
    unnamed: list[Path] = []
    for spec in args.root:
        name, sep, file = spec.partition("=")
        if sep and name and not Path(spec).exists():
            pinned[name] = Path(file)
        else:
            unnamed.append(Path(spec))
    if unnamed:
        if pinned or len(unnamed) > 1:
            raise _UsageError("give every root as NAME=ROOT.json when verifying more than one repository")
        names = _bundle_repositories(bundle)
        if len(names) != 1:
            raise AirlockError(
                f"the bundle holds {len(names)} repositories ({', '.join(names) or 'none'}): "
                "use --root NAME=ROOT.json for each"
            )
        pinned[names[0]] = unnamed[0]
    roots = {}
    for name, path in pinned.items():
        try:
            roots[name] = path.read_bytes()
        except OSError as e:
            raise AirlockError(f"cannot read root file {path}: {e.strerror}") from None
    from signing.report import verify_bundle

    report = verify_bundle(bundle, roots, incremental=args.incremental)
    _out(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return 0


def cmd_fingerprint(args) -> int:
    _out(_fingerprint(Path(args.root_file)))
    return 0


# the parser ------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Offline signing tool for Airlock (TUF) repositories.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    secret = _Parser(add_help=False)
    secret.add_argument(
        "--passphrase-file",
        metavar="FILE",
        help=f"read the key passphrase from FILE (else ${PASSPHRASE_ENV}, else a prompt on a terminal)",
    )
    key_type = _Parser(add_help=False)
    key_type.add_argument("--key-type", choices=KEY_TYPES, default=None, help="type of new keys")

    def command(name, func, help_text, parents=()):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=list(parents))
        p.set_defaults(func=func)
        return p

    p = command("init", cmd_init, "create a workspace: keys and version 1 of every role", [secret])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--name", required=True, help="repository name (as on the appliance)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ed25519")
    p.add_argument("--keys", action="append", metavar="ROLE=N", help="number of keys for a role (default 1)")
    p.add_argument("--threshold", action="append", metavar="ROLE=N", help="signatures a role needs (default 1)")
    p.add_argument("--expires", action="append", metavar="ROLE=DAYS", help="validity of a role's metadata")

    p = command("keygen", cmd_keygen, "make a key of your own (OUT and its public half OUT.pub)", [secret])
    p.add_argument("out", metavar="OUT")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ed25519")

    p = command("add-target", cmd_add_target, "add a firmware file to a role (staged)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--path", required=True, help="target path, e.g. firmware/model-x/fw-1.2.3.bin")
    p.add_argument("--hardware", action="append", required=True, help="hardware model it is for (repeatable)")
    p.add_argument("--version", required=True, help="firmware version X.Y.Z")
    p.add_argument("--role", default="targets")

    p = command("remove-target", cmd_remove_target, "remove a target from a role (staged)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--role", default="targets")

    p = command("delegate", cmd_delegate, "delegate target paths to a new role (staged)", [secret, key_type])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("role", metavar="ROLE")
    p.add_argument("--paths", nargs="+", required=True, metavar="PATTERN", help="path patterns, e.g. 'firmware/x/*'")
    p.add_argument("--parent", default="targets")
    p.add_argument("--keys", type=int, default=None, help="new keys to make (default 1, or 0 with --public-key)")
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--public-key", action="append", metavar="FILE", help="authorize an existing public key")
    p.add_argument("--terminating", action="store_true", help="stop the search for targets at this role")

    p = command("rotate", cmd_rotate, "replace the keys of a role (staged)", [secret, key_type])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("role", metavar="ROLE")
    p.add_argument("--keys", type=int, default=None, help="new keys to make (default 1, or 0 with --public-key)")
    p.add_argument("--public-key", action="append", metavar="FILE", help="authorize an existing public key")
    p.add_argument("--threshold", type=int, default=None, help="new threshold (default: unchanged)")
    p.add_argument(
        "--remove-keyid", action="append", metavar="ID", help="key to remove (default: all current keys of the role)"
    )

    p = command("authorize-appliance", cmd_authorize_appliance,
                "add an appliance's timestamp key to the root's timestamp role (a new root, staged and signed)",
                [secret])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("key_file", metavar="KEY.json",
                   help="the appliance's timestamp-key.json (`airlock keys show --timestamp`, or from an export)")
    p.add_argument("--threshold", type=int, default=1,
                   help="signatures a timestamp needs (default 1: the vendor's key or the appliance's alone)")
    p.add_argument("--key", action="append", metavar="FILE",
                   help="root key file to sign the new root with (repeatable; or sign later with `sign`)")

    p = command("expires", cmd_expires, "set how many days a role's metadata stays valid")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("role", metavar="ROLE")
    p.add_argument("days", metavar="DAYS", type=int)

    p = command("sign", cmd_sign, "add your signature to staged metadata", [secret])
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--key", action="append", required=True, metavar="FILE", help="key file (repeatable)")
    p.add_argument("--role", action="append", metavar="ROLE", help="sign only this staged role (repeatable)")

    p = command("status", cmd_status, "show staged roles and their signatures")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", action="store_true")

    p = command("publish", cmd_publish, "publish staged roles with a new snapshot and timestamp", [secret])
    p.add_argument("dir", metavar="DIR")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--key", action="append", metavar="FILE", help="key file (repeatable)")
    group.add_argument("--keys-dir", metavar="KEYDIR", help="use every *.key file in KEYDIR")

    p = command("bundle", cmd_bundle, "write the published repository as a bundle for USB media")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("dest", metavar="DEST", help="media root (dir format) or archive file (tar formats)")
    p.add_argument("--format", choices=("dir", "tar", "tar.gz"), default="dir")
    p.add_argument("--incremental-from", metavar="OLD", help="leave out target files already in this earlier bundle")

    p = command("verify", cmd_verify, "verify a bundle as the appliance would, from pinned roots")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--root", action="append", required=True, metavar="NAME=ROOT.json",
        help="pinned root of a repository (ROOT.json alone when the bundle holds one repository)",
    )
    p.add_argument("--incremental", action="store_true",
                   help="accept target files missing from the bundle (an incremental bundle: the appliance "
                        "must already hold them); they are listed as not in the bundle, and every target "
                        "file present is still checked")
    p.add_argument("--json", action="store_true")

    p = command("fingerprint", cmd_fingerprint, "print the SHA-256 of a root file, for pinning")
    p.add_argument("root_file", metavar="ROOT.json")

    from signing.export_cli import add_export_commands  # airlock-sign export keygen|verify|show|unpack

    add_export_commands(command("export", None, "verify and read an appliance's export files"), secret)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format=f"{PROG}: %(message)s", stream=sys.stderr
        )
        return args.func(args)
    except _UsageError as e:
        _fail(f"{e} (see '{PROG} --help')")
        return 2
    except AirlockError as e:
        _fail(str(e))
        return 1
    except OSError as e:
        _fail(f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e))
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
