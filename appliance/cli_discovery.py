"""``airlock mdns`` and ``airlock discovery ...``: a thin shell over
:mod:`appliance.mdns` and :mod:`server.discovery.services`.

Commands receive the CLI's context object (``--home`` and settings) with
``click.pass_obj``, so this module does not import ``appliance.cli``."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--bind", default=None, metavar="HOST:PORT",
              help="Address of the HTTP server to advertise (default: the bind setting).")
@click.pass_obj
def mdns(ctx, bind: str | None) -> None:
    """Advertise the appliance and record discovered services, in the foreground."""
    from appliance.mdns import run

    ctx.overrides.update(bind=bind)
    settings = ctx.settings
    click.echo(f"airlock mdns on {settings.mdns_interfaces} (Ctrl-C stops)", err=True)
    run(settings)


@click.group()
def discovery() -> None:
    """What the appliance sees on the LAN by mDNS."""


@discovery.command("list")
@click.option("--type", "service_type", default=None, metavar="TYPE", help="Only this service type.")
@click.option("--present", is_flag=True, help="Only services that still answer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def discovery_list(ctx, service_type: str | None, present: bool, as_json: bool) -> None:
    """List discovered services: devices and the extra types browsed."""
    from server.discovery.services import list_discovered

    ctx.database()
    found = list_discovered(service_type, present_only=present)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("nothing discovered yet (is mDNS on? see `airlock settings`, mdns_*)")
    for d in found:
        where = ",".join(d.addresses) or "-"
        txt = " ".join(k if v is None else f"{k}={v}" for k, v in d.txt.items())
        linked = f"\tenrolled device {d.device_id}" if d.enrolled else ""
        since = f"gone since {d.gone_since}" if d.gone_since else f"last seen {d.last_seen}"
        click.echo(f"{d.state}\t{d.service_type}\t{d.instance}\t{where}:{d.port}\t{txt}\t"
                   f"first seen {d.first_seen}, {since}{linked}")
