"""``airlock keys show``, ``airlock export DEST`` and ``airlock audit ...``:
thin commands over :mod:`appliance.export` and :mod:`server.audit`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance.render import _safe, current_operator


def _ctx():
    return click.get_current_context().obj


@click.group()
def keys() -> None:
    """The appliance's own keys: its identity key (it signs exports) and its timestamp key."""


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (both keys).")
@click.option("--timestamp", is_flag=True,
              help="Print the public half of the appliance's timestamp key as a TUF key file, for "
                   "`airlock-sign authorize-appliance`.")
def keys_show(as_json: bool, timestamp: bool) -> None:
    """Print the appliance id and the public key (PEM, SHA-256 fingerprint) to give the vendor;
    with --timestamp, the appliance's TUF timestamp key instead."""
    from appliance.export import public_identity
    from appliance.setup import appliance_id
    from server.timestamp_key import timestamp_public_key

    ctx = _ctx()
    if timestamp and not as_json:
        click.echo(timestamp_public_key(ctx.settings).file_bytes().decode().rstrip("\n"))
        return
    info = public_identity(ctx.settings, appliance_id(ctx.settings))
    if as_json:
        click.echo(json.dumps({"appliance_id": info.appliance_id, "sha256": info.fingerprint,
                               "public_key_pem": info.public_pem,
                               "timestamp_key": timestamp_public_key(ctx.settings).to_dict()}, indent=2))
        return
    click.echo(info.public_file.decode().rstrip("\n"))


@click.command("export")
@click.argument("dest", type=click.Path())
@click.option("--since", type=int, default=None, metavar="N",
              help="Re-export everything from export N on (the file gets a new number, marked as a re-export).")
@click.option("--encrypt-for", metavar="REPO", default=None,
              help="Encrypt to the export key the vendor of repository REPO ships as airlock/export-key.pub.")
@click.option("--operator", default=None, help="Who is exporting (default: the login user).")
def export(dest: str, since: int | None, encrypt_for: str | None, operator: str | None) -> None:
    """Write everything collected since the last export to the folder DEST (a mounted stick)."""
    from appliance.export import run_export
    from appliance.progress import ProgressBar

    ctx = _ctx()
    ctx.database()
    bar = ProgressBar("exporting")
    try:
        result = run_export(ctx.settings, Path(dest), operator or current_operator(), since=since,
                            encrypt_for=encrypt_for, progress=bar)
    finally:
        bar.close()
    click.echo(result.message)


@click.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; report the first broken record (exit 1)."""
    from server.audit import verify

    _ctx().database()
    click.echo(verify().message)


@audit.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines.")
@click.option("--since", type=int, default=0, metavar="N", help="Only records after record N.")
@click.option("--limit", type=int, default=None, help="At most this many records.")
def audit_list(as_json: bool, since: int, limit: int | None) -> None:
    """List audit records, oldest first."""
    from server.audit import iter_rows

    _ctx().database()
    for n, rec in enumerate(iter_rows(after_id=since)):
        if limit is not None and n >= limit:
            break
        if as_json:
            click.echo(json.dumps(rec, sort_keys=True, ensure_ascii=True))
        else:
            details = json.dumps(rec["details"], sort_keys=True, ensure_ascii=True)
            click.echo(f"#{rec['id']} {_safe(rec['at'])} {_safe(rec['actor'])} {_safe(rec['action'])} "
                       f"{_safe(rec['subject'])} {details}")


def register(cli: click.Group) -> None:
    for command in (keys, export, audit):
        cli.add_command(command)
