"""``airlock-sign export keygen|verify|show|unpack``: the vendor's commands
for an appliance's export files, a thin shell over :mod:`signing.export`."""

from __future__ import annotations

import argparse
from pathlib import Path

from signing.export import (
    describe_export,
    generate_export_key,
    load_export_private_key,
    unpack_export,
    verify_export,
)


def _out(line: str = "") -> None:
    print(line, flush=True)


def _decrypt_key(args):
    if not args.decrypt_key:
        return None
    from signing.cli import _passphrase

    return load_export_private_key(Path(args.decrypt_key), _passphrase(args))


def cmd_keygen(args) -> int:
    from signing.cli import _passphrase

    pub = generate_export_key(Path(args.out), _passphrase(args, new=True))
    _out(f"wrote private key {args.out} (encrypted; it decrypts every export made to it: keep it safe)")
    _out(f"wrote public key {pub}: ship it to the appliances as target airlock/export-key.pub of your repository")
    return 0


def cmd_verify(args) -> int:
    result = verify_export(Path(args.file), Path(args.appliance_key), decrypt_key=_decrypt_key(args),
                           previous=Path(args.previous) if args.previous else None)
    _out(result.summary())
    return 0


def cmd_show(args) -> int:
    _out(describe_export(Path(args.file), decrypt_key=_decrypt_key(args)))
    return 0


def cmd_unpack(args) -> int:
    result = unpack_export(Path(args.file), Path(args.outdir), Path(args.appliance_key),
                           decrypt_key=_decrypt_key(args), previous=Path(args.previous) if args.previous else None)
    _out(result.summary())
    _out(f"unpacked into {args.outdir}")
    return 0


def add_export_commands(parent: argparse.ArgumentParser, secret: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    parser_class = type(parent)

    def command(name, func, help_text, parents=()):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=list(parents))
        p.set_defaults(func=func)
        return p

    decrypt = parser_class(add_help=False)
    decrypt.add_argument("--decrypt-key", metavar="KEY",
                         help="your export key (from `airlock-sign export keygen`), for an encrypted export")

    p = command("keygen", cmd_keygen, "make the X25519 key pair appliances encrypt exports to", [secret])
    p.add_argument("out", metavar="OUT")

    p = command("verify", cmd_verify, "check an export's signature, files and sequence", [secret, decrypt])
    p.add_argument("file", metavar="FILE")
    p.add_argument("--appliance-key", required=True, metavar="KEY.pub",
                   help="the appliance's public key (`airlock keys show`, or appliance.pub of its first export)")
    p.add_argument("--previous", metavar="PREV", help="the previous export (file or its manifest.json)")

    p = command("show", cmd_show, "summarise an export (does not verify)", [secret, decrypt])
    p.add_argument("file", metavar="FILE")

    p = command("unpack", cmd_unpack, "verify an export and unpack its JSON Lines files into a new folder",
                [secret, decrypt])
    p.add_argument("file", metavar="FILE")
    p.add_argument("outdir", metavar="OUTDIR")
    p.add_argument("--appliance-key", required=True, metavar="KEY.pub", help="the appliance's public key")
    p.add_argument("--previous", metavar="PREV", help="the previous export (file or its manifest.json)")
