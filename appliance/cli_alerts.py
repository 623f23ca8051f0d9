"""``airlock alerts``: open alerts (or all), and ``airlock alerts sweep``;
a thin shell over ``server.alerts``.  Registered by ``appliance.cli``."""

from __future__ import annotations

import json

import click

from appliance.render import _safe


@click.group("alerts", invoke_without_command=True)
@click.option("--all", "include_closed", is_flag=True, help="Closed alerts too (the newest 1000).")
@click.option("--kind", metavar="KIND", help="Only alerts of this kind (device_offline, reboot_loop, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alerts(click_ctx: click.Context, include_closed: bool, kind: str | None, as_json: bool) -> None:
    """List open alerts, newest first (with --all, closed ones too)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from server.alerts import services

    ctx = click_ctx.obj
    ctx.database()
    found = services.list_alerts(include_closed=include_closed, kind=kind)
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found], indent=2))
        return
    if not found:
        click.echo("no open alerts" if not include_closed else "no alerts")
        return
    for a in found:
        span = f"since {a.opened_at}" if a.open else f"{a.opened_at} to {a.closed_at} ({_safe(a.close_reason or '')})"
        click.echo(f"{a.id}  {'OPEN  ' if a.open else 'closed'}  {a.kind}  {_safe(a.subject)}  {span}  "
                   f"{_safe(a.detail)}")


@alerts.command("sweep")
@click.pass_obj
def alerts_sweep(ctx) -> None:
    """Look for devices gone offline and metadata about to expire now
    (`airlock serve` does it every alert_sweep_interval seconds)."""
    from server.alerts.sweep import sweep

    ctx.database()
    result = sweep(ctx.settings)
    click.echo(f"alerts: {result.opened} opened, {result.closed} closed")


def register(cli: click.Group) -> None:
    cli.add_command(alerts)
