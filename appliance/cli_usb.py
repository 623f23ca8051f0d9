"""``airlock usb-import DEVICE``: a thin command over :mod:`appliance.usb`."""

from __future__ import annotations

import click

from signing.exceptions import AirlockError


@click.command("usb-import")
@click.argument("device")
def usb_import_cmd(device: str) -> None:
    """Mount a USB partition read-only, import its airlock/ folder, unmount (run as root by airlock-usb@.service)."""
    from appliance.usb import usb_import

    ctx = click.get_current_context().obj
    result = usb_import(ctx.settings, device)
    if result.exit_code:
        raise AirlockError(result.message)
    click.echo(result.message)


def register(cli: click.Group) -> None:
    cli.add_command(usb_import_cmd)
