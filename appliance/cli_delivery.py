"""``airlock windows ...`` (maintenance windows per group) and ``airlock
download-caps ...`` (caps on firmware downloads per group): a thin shell
over ``server.delivery``.  Registered by ``appliance.cli``."""

from __future__ import annotations

import json

import click

from appliance.render import _safe, current_operator


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(_safe(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def _windows(ctx):
    from server.delivery import windows

    ctx.database()
    return windows


@click.group()
def windows() -> None:
    """Maintenance windows: when a group's devices may be offered updates."""


@windows.command("add")
@click.argument("group")
@click.option("--days", required=True, help="Weekdays the window starts on: sun, sat,sun, mon-fri, daily...")
@click.option("--start", required=True, metavar="HH:MM", help="Local time the window opens.")
@click.option("--end", required=True, metavar="HH:MM",
              help="Local time it closes; at or before --start: on the next day (crossing midnight).")
@click.option("--timezone", required=True, metavar="ZONE", help="IANA time zone of the plant, e.g. Europe/Berlin.")
@click.pass_obj
def windows_add(ctx, group: str, days: str, start: str, end: str, timezone: str) -> None:
    """Add a window to GROUP (a device tag): its devices are then offered
    updates only while one of its windows is open."""
    w = _windows(ctx).add_window(group, days, start, end, timezone, current_operator())
    click.echo(f"window {w.id} for group {_safe(w.group)}: {w.describe()}")


@windows.command("list")
@click.option("--group", metavar="TAG", help="Only this group's windows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def windows_list(ctx, group: str | None, as_json: bool) -> None:
    """List maintenance windows and whether each is open now."""
    module = _windows(ctx)
    found = module.list_windows(group)
    if as_json:
        click.echo(json.dumps([{**w.to_dict(), "open_now": module.window_open(w)} for w in found], indent=2))
    elif not found:
        click.echo("no maintenance windows: devices may be offered updates at any time")
    else:
        click.echo(_table([(w.id, w.group, ",".join(w.days), f"{w.start}-{w.end}", w.timezone,
                            "open" if module.window_open(w) else "closed", f"{w.created_at} by {w.created_by}")
                           for w in found], ("ID", "GROUP", "DAYS", "TIME", "ZONE", "NOW", "ADDED")))


@windows.command("remove")
@click.argument("window_id", type=int)
@click.pass_obj
def windows_remove(ctx, window_id: int) -> None:
    """Remove a window."""
    w = _windows(ctx).remove_window(window_id, current_operator())
    click.echo(f"removed window {w.id} of group {_safe(w.group)} ({w.describe()})")


def register(cli: click.Group) -> None:
    cli.add_command(windows)
