"""``airlock status``: a thin command over :mod:`appliance.status`."""

from __future__ import annotations

import json

import click


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(as_json: bool) -> None:
    """One screen: serve, clock, disk, repository expiries, devices, last import and export."""
    from appliance.status import gather, render

    ctx = click.get_current_context().obj
    ctx.database()
    report = gather(ctx.settings)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else render(report))


def register(cli: click.Group) -> None:
    cli.add_command(status)
