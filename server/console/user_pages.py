"""The console's Users page: every user with role, creation time and
whether disabled; an admin adds users, sets a role, disables a user and
resets a password.  Thin views over ``server.users.services``, which
audits each change and ends the user's console sessions on a role change,
disabling or a new password.  The user name travels in the form, not the
path (a name may hold any printable character but ':')."""

from __future__ import annotations

from flask import g, redirect, render_template, request

from server.console.query import parse
from server.console.views import bp
from server.devices.exceptions import NotFoundError
from server.users import services as users
from server.users.records import ROLES

ACTIONS = ("role", "disable", "password")


@bp.get("/users")
def users_page():
    parse("list_users", request.args)
    return render_template("console/users.html", title="Users", users=users.list_users(), roles=ROLES,
                           min_password=users.MIN_PASSWORD, user=g.airlock_session)


@bp.post("/users")
def user_add():
    form = request.form
    users.create_user(form.get("username", "").strip(), form.get("password", ""), form.get("role", ""),
                      f"{g.airlock_session.username} (console)")
    return redirect("/users", code=303)


@bp.post("/users/<action>")
def user_action(action: str):
    if action not in ACTIONS:
        raise NotFoundError(f"no user action {action[:40]!r}: use {', '.join(ACTIONS)}")
    form = request.form
    who = f"{g.airlock_session.username} (console)"
    username = form.get("username", "")
    if action == "role":
        users.set_role(username, form.get("role", ""), who)
    elif action == "disable":
        users.disable_user(username, who)
    else:
        users.change_password(username, users.check_new_password(form.get("password", ""), "the new password"),
                              who)
    return redirect("/users", code=303)
