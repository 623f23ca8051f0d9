"""``airlock timestamp refresh``: a thin command over :mod:`appliance.freshness`."""

from __future__ import annotations

import click

from appliance.render import _safe, current_operator


@click.group("timestamp")
def timestamp() -> None:
    """Keep repositories' timestamp.json fresh with the appliance's own key (where the vendor's root allows it)."""


@timestamp.command("refresh")
@click.option("--force", is_flag=True, help="Re-sign every authorized repository's timestamp now, however fresh.")
@click.option("--operator", default=None, help="Who is refreshing (default: the login user).")
def refresh(force: bool, operator: str | None) -> None:
    """Re-sign timestamp.json of each repository whose root authorizes the appliance's key, before it expires."""
    from appliance.freshness import refresh_timestamps

    ctx = click.get_current_context().obj
    ctx.database()
    outcomes = refresh_timestamps(ctx.settings, operator or current_operator(), force=force)
    if not outcomes:
        click.echo("no repository is pinned: nothing to refresh")
    for outcome in outcomes:
        click.echo(_safe(outcome.line))


def register(cli: click.Group) -> None:
    cli.add_command(timestamp)
