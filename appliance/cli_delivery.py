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


def _caps(ctx):
    from server.delivery import caps

    ctx.database()
    return caps


@click.group("download-caps")
def download_caps() -> None:
    """Caps on concurrent firmware downloads and bandwidth, per group."""


@download_caps.command("set")
@click.argument("group")
@click.option("--downloads", type=int, required=True, help="Most concurrent firmware downloads by GROUP's devices.")
@click.option("--bandwidth", type=int, default=0, show_default=True, metavar="BYTES_PER_SECOND",
              help="Bandwidth those downloads share; 0: no bandwidth cap.")
@click.pass_obj
def caps_set(ctx, group: str, downloads: int, bandwidth: int) -> None:
    """Cap the firmware downloads of GROUP's devices (a device tag)."""
    c = _caps(ctx).set_cap(group, downloads, bandwidth, current_operator())
    click.echo(f"group {_safe(c.group)}: at most {c.max_downloads} concurrent downloads"
               + (f" sharing {c.max_bytes_per_second} bytes/s" if c.max_bytes_per_second else ""))


@download_caps.command("clear")
@click.argument("group")
@click.pass_obj
def caps_clear(ctx, group: str) -> None:
    """Remove GROUP's caps (the appliance's settings still apply)."""
    c = _caps(ctx).clear_cap(group, current_operator())
    click.echo(f"group {_safe(c.group)}: no download cap of its own any more")


@download_caps.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def caps_list(ctx, as_json: bool) -> None:
    """The appliance's caps (settings) and each group's."""
    found = _caps(ctx).describe_caps(ctx.settings)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    mine = found["appliance"]
    rows = [("(appliance)", mine["max_downloads"] or "no cap", mine["max_bytes_per_second"] or "no cap", "settings")]
    rows += [(g["group"], g["max_downloads"], g["max_bytes_per_second"] or "no cap",
              f"{g['updated_at']} by {g['updated_by']}") for g in found["groups"]]
    click.echo(_table(rows, ("SCOPE", "DOWNLOADS", "BYTES/S", "SET")))


def register(cli: click.Group) -> None:
    cli.add_command(windows)
    cli.add_command(download_caps)
