"""``airlock tls ...``: the appliance's TLS certificate, a thin shell over
:mod:`appliance.tls` (``airlock init --tls-name`` calls the same service)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from appliance.render import current_operator
from appliance.tls import DEFAULT_DAYS, TlsInfo


def describe(info: TlsInfo) -> str:
    def day(t: int) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")

    return "\n".join([
        f"sha256 {info.fingerprint}",
        f"subject {info.subject}",
        f"names {', '.join(info.names) or '(none)'}",
        f"valid {day(info.not_before)} to {day(info.not_after)}"
        + (" (self-signed)" if info.self_signed else ""),
        f"certificate {info.cert_path}",
        f"key {info.key_path}",
    ])


def audit(action: str, info: TlsInfo) -> None:
    """A certificate change is a security officer's business: one audit record (the database is open)."""
    from server.audit import record

    record(current_operator(), action, "tls", {"sha256": info.fingerprint, "subject": info.subject,
                                               "names": info.names, "not_after": info.not_after,
                                               "self_signed": info.self_signed})


@click.group("tls")
def tls() -> None:
    """The certificate nginx serves and devices pin (docs/operator-guide.md, "TLS")."""


@tls.command("create")
@click.option("--name", "names", multiple=True, required=True, metavar="HOST|IP",
              help="A host name or IP address devices and browsers use (repeat for several).")
@click.option("--days", default=DEFAULT_DAYS, show_default=True, help="Days the certificate is valid.")
@click.option("--replace", is_flag=True, help="Replace the certificate the appliance has.")
def tls_create(names: tuple[str, ...], days: int, replace: bool) -> None:
    """Make a self-signed ECDSA P-256 certificate."""
    from appliance.tls import create_self_signed

    ctx = click.get_current_context().obj
    ctx.database()  # refused before anything is made when there is no appliance here
    info = create_self_signed(ctx.settings, list(names), days, replace)
    audit("tls.create", info)
    click.echo(describe(info))


@tls.command("import")
@click.option("--cert", "cert_file", required=True, type=click.Path(dir_okay=False),
              help="PEM certificate (the server's first, then any chain).")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False),
              help="Its PEM private key, unencrypted.")
@click.option("--replace", is_flag=True, help="Replace the certificate the appliance has.")
def tls_import(cert_file: str, key_file: str, replace: bool) -> None:
    """Take plant IT's certificate and key."""
    from appliance.tls import import_pair

    ctx = click.get_current_context().obj
    ctx.database()
    info = import_pair(ctx.settings, Path(cert_file), Path(key_file), replace)
    audit("tls.import", info)
    click.echo(describe(info))


@tls.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tls_show(as_json: bool) -> None:
    """Print the certificate's fingerprint (what devices pin), names and dates."""
    from appliance.tls import TlsError, current

    ctx = click.get_current_context().obj
    info = current(ctx.settings)
    if info is None:
        raise TlsError(f"{ctx.settings.home} has no TLS certificate: make one with `airlock tls create --name HOST` "
                       "or import plant IT's with `airlock tls import --cert FILE --key FILE`")
    click.echo(json.dumps(asdict(info), indent=2) if as_json else describe(info))


def register(cli: click.Group) -> None:
    cli.add_command(tls)
