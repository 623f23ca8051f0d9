"""``airlock users ...``: console and admin-API users.  Thin commands over
:mod:`server.users.services`."""

from __future__ import annotations

import sys

import click

from appliance.render import _safe, current_operator
from server.auth import MAX_PASSWORD
from signing.exceptions import AirlockError


def _ctx():
    return click.get_current_context().obj


def read_password(password_file: str | None, prompt: str) -> str:
    """The password from ``password_file`` (its first line, without the line
    end); a prompt only when standard input is a terminal."""
    if password_file:
        try:
            with open(password_file, "rb") as f:
                data = f.read(4 * MAX_PASSWORD + 2)
        except OSError as exc:
            raise AirlockError(f"cannot read the password file {password_file}: {exc.strerror}") from None
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise AirlockError(f"the password file {password_file} is not UTF-8 text; nothing changed") from None
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    raise AirlockError("give the password with --password-file FILE when standard input is not a terminal; "
                       "nothing changed")


@click.group()
def users() -> None:
    """Console and admin-API users."""


@users.command("passwd")
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the new password (at least 12 characters).")
def users_passwd(name: str, password_file: str | None) -> None:
    """Change user NAME's password; the old one stops working at once."""
    from server.users.services import change_password, get_user

    ctx = _ctx()
    ctx.database()
    get_user(name)  # an unknown name is refused before anything is read or asked
    password = read_password(password_file, f"New password for {name}")
    info = change_password(name, password, current_operator())
    click.echo(f"changed the password of {_safe(info.username)} ({info.role})")


def register(cli: click.Group) -> None:
    cli.add_command(users)
