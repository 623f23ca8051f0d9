"""``airlock backup DEST`` and ``airlock restore SRC``: thin commands over
:mod:`appliance.backup`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.render import current_operator
from signing.exceptions import AirlockError

MAX_PASSPHRASE_FILE = 4096  # bytes


def _passphrase(path: str | None, confirm: bool) -> bytes:
    """The first line of ``path``; or asked on a terminal; never prompted for
    without one."""
    if path:
        data = Path(path).read_bytes()[:MAX_PASSPHRASE_FILE]
        line = data.split(b"\n", 1)[0].rstrip(b"\r")
        if not line:
            raise AirlockError(f"{path} is empty: put the backup passphrase on its first line")
        return line
    if not sys.stdin.isatty():
        raise AirlockError("give --passphrase-file FILE (standard input is not a terminal, so there is no prompt)")
    return click.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm).encode()


PASSPHRASE_HELP = "File whose first line is the backup passphrase (asked on a terminal otherwise)."


@click.command("backup")
@click.argument("dest", type=click.Path())
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True), help=PASSPHRASE_HELP)
@click.option("--keep", type=int, default=None, metavar="N",
              help="Then remove this appliance's older backups in DEST but the N newest (for a schedule).")
def backup_cmd(dest: str, passphrase_file: str | None, keep: int | None) -> None:
    """Write one encrypted backup of the whole appliance into folder DEST (while it runs)."""
    from appliance.backup import backup

    ctx = click.get_current_context().obj
    ctx.database()
    result = backup(ctx.settings, Path(dest), _passphrase(passphrase_file, confirm=True), current_operator(),
                    keep=keep)
    click.echo(result.message)


@click.command("restore")
@click.argument("src", type=click.Path())
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True), help=PASSPHRASE_HELP)
@click.option("--force", is_flag=True, help="Replace a home that holds data (kept in HOME/replaced-<time>/).")
def restore_cmd(src: str, passphrase_file: str | None, force: bool) -> None:
    """Bring the appliance back from a backup file, onto a fresh home."""
    from appliance.backup import restore

    ctx = click.get_current_context().obj
    result = restore(ctx.settings, Path(src), _passphrase(passphrase_file, confirm=False), current_operator(),
                     force=force)
    click.echo(result.message)


def register(cli: click.Group) -> None:
    cli.add_command(backup_cmd)
    cli.add_command(restore_cmd)
