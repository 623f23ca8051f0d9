"""``airlock users ...``: console and admin-API users.  Thin commands over
:mod:`server.users.services`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

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


@users.command("add")
@click.argument("name")
@click.option("--role", required=True, metavar="admin|operator|auditor",
              help="admin (plant IT), operator (floor) or auditor (security officer).")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the password (at least 12 characters).")
def users_add(name: str, role: str, password_file: str | None) -> None:
    """Add console and admin-API user NAME with ROLE."""
    from server.users.services import check_role, create_user

    ctx = _ctx()
    ctx.database()
    check_role(role)  # refused before any password is read or asked
    password = read_password(password_file, f"Password for {name}")
    info = create_user(name, password, role, current_operator())
    click.echo(f"added {info.role} {_safe(info.username)}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def users_list(as_json: bool) -> None:
    """Every user, with role and whether it is disabled."""
    from server.users.services import list_users

    ctx = _ctx()
    ctx.database()
    for info in list_users():
        if as_json:
            click.echo(json.dumps(asdict(info)))
        else:
            state = "disabled" if info.disabled else "enabled"
            click.echo(f"{_safe(info.username):<24} {info.role:<9} {state:<9} created {info.created_at}")


@users.command("set-role")
@click.argument("name")
@click.argument("role", metavar="admin|operator|auditor")
def users_set_role(name: str, role: str) -> None:
    """Give user NAME another ROLE; their console sessions end at once."""
    from server.users.services import set_role

    ctx = _ctx()
    ctx.database()
    info = set_role(name, role, current_operator())
    click.echo(f"{_safe(info.username)} is now {info.role}")


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Stop user NAME from logging in; their console sessions end at once."""
    from server.users.services import disable_user

    ctx = _ctx()
    ctx.database()
    info = disable_user(name, current_operator())
    click.echo(f"disabled {_safe(info.username)} ({info.role})")


def register(cli: click.Group) -> None:
    cli.add_command(users)
