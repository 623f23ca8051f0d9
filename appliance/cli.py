"""``airlock``: the appliance's command line.  A thin shell: each command
parses its input, calls a service, prints the result; any refusal is one
line on stderr and a non-zero exit."""

from __future__ import annotations

import errno
import json
import logging
import sys
from pathlib import Path

import click

from appliance.access import explain_denied, explain_not_owner
from appliance.logs import CommandLog
from appliance.render import current_operator
from server import bind_database
from server.db import DatabaseError, check_schema
from server.settings import SETTINGS, Settings, load_settings, shown
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)


# commands that run as services: they log to stderr (journald), the others
# to HOME/log/airlock.log (appliance/logs.py)
SERVICES = ("serve", "mdns")
# commands that only read the database: it is opened read-only for them
READ_ONLY = frozenset({
    "repo list", "repo show", "devices list", "devices show", "devices auto-accept list", "releases list",
    "reports list", "reports show", "discovery list", "audit verify", "audit list", "keys show",
    "status", "alerts", "users list", "rollouts list", "rollouts show", "windows list", "download-caps list",
    "tls show",
})


class Context:
    def __init__(self, home: str | None, overrides: dict, log: CommandLog | None = None):
        self.home = home
        self.overrides = overrides
        self.log = log
        self.read_only = False
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.home, self.overrides)
            if self.log is not None:
                self.log.settle(self._settings)
        return self._settings

    def database(self):
        """The appliance's database, opened read-only for the commands in
        READ_ONLY, so that a user who may read the home can run them."""
        path = self.settings.database_path
        denied = None if self.settings.database_url else explain_denied(path)
        if denied:
            raise AirlockError(denied)
        if not self.settings.database_url and not path.exists():
            raise AirlockError(f"no appliance database at {path}: run `airlock init` "
                               "first, or point --home (or AIRLOCK_HOME) at the appliance's folder")
        current = click.get_current_context(silent=True)
        self.read_only = current is not None and current.command_path.removeprefix("airlock ") in READ_ONLY
        db = bind_database(self.settings, read_only=self.read_only)
        check_schema(db)
        return db


pass_ctx = click.make_pass_decorator(Context)


HOME_HELP = "Appliance state folder (env AIRLOCK_HOME, default /var/lib/airlock)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="AIRLOCK_HOME", default=None, metavar="DIR", help=HOME_HELP)
@click.version_option(package_name="airlock")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Airlock: TUF update appliance for air-gapped plants."""
    log = ctx.obj if isinstance(ctx.obj, CommandLog) else None  # from main()
    if log is not None:
        log.service = ctx.invoked_subcommand in SERVICES
    ctx.obj = Context(home, {}, log)


@cli.command()
@click.option("--admin", metavar="NAME", help="Create this console administrator.")
@click.option("--password-file", type=click.Path(dir_okay=False, exists=True), help="File holding the admin password.")
@click.option("--tls-name", "tls_names", multiple=True, metavar="HOST|IP",
              help="Make a self-signed TLS certificate for this host name or IP address (repeat for several), "
                   "unless the home has one.")
@pass_ctx
def init(ctx: Context, admin: str | None, password_file: str | None, tls_names: tuple[str, ...]) -> None:
    """Create or upgrade the appliance's home (idempotent)."""
    from appliance.setup import initialise

    password = None
    if admin:
        if password_file:
            password = Path(password_file).read_text().rstrip("\n")
        elif sys.stdin.isatty():
            password = click.prompt("Password for " + admin, hide_input=True, confirmation_prompt=True)
        else:
            raise AirlockError("--admin needs --password-file when standard input is not a terminal")
    if tls_names:
        from appliance.tls import parse_names

        parse_names(list(tls_names))  # a bad name is refused before anything is made
    result = initialise(ctx.settings, admin, password, current_operator())
    click.echo(f"home {result.home}; appliance id {result.appliance_id}")
    for m in result.migrations_applied:
        click.echo(f"applied migration {m}")
    if not result.migrations_applied:
        click.echo("database schema is up to date")
    if result.admin_created:
        click.echo(f"created admin {result.admin_created}")
    if result.clock_problem:
        click.echo(f"airlock: warning: {result.clock_problem}", err=True)
    if tls_names:
        from appliance.tls import create_self_signed, current

        info = current(ctx.settings)
        if info is None:
            from appliance.cli_tls import audit

            info = create_self_signed(ctx.settings, list(tls_names))
            ctx.database()
            audit("tls.create", info)
            click.echo(f"made a TLS certificate for {', '.join(info.names)}: sha256 {info.fingerprint}")
        else:
            click.echo(f"TLS certificate kept: sha256 {info.fingerprint} (`airlock tls create --replace` replaces it)")


@cli.group()
def repo() -> None:
    """Pin and inspect vendors' TUF repositories."""


@repo.command("add")
@click.argument("name")
@click.option("--root", "root_file", required=True, type=click.Path(dir_okay=False), help="The vendor's root.json.")
@click.option("--fingerprint", required=True, metavar="SHA256HEX",
              help="SHA-256 of the root file's bytes, obtained from the vendor out of band.")
@pass_ctx
def repo_add(ctx: Context, name: str, root_file: str, fingerprint: str) -> None:
    """Pin a vendor's root of trust after checking its fingerprint."""
    from server.repositories.services import pin_repository

    ctx.database()
    info = pin_repository(ctx.settings, name, Path(root_file), fingerprint, current_operator())
    click.echo(f"pinned {info.name}: root version {info.pinned_root_version}, sha256 {info.root_fingerprint}")


@repo.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def repo_list(ctx: Context, as_json: bool) -> None:
    """List pinned repositories."""
    from dataclasses import asdict

    from server.repositories.services import list_repositories

    ctx.database()
    repos = list_repositories()
    if as_json:
        click.echo(json.dumps([asdict(r) for r in repos], indent=2))
        return
    if not repos:
        click.echo("no repositories pinned; pin one with `airlock repo add NAME --root FILE --fingerprint HEX`")
    for r in repos:
        click.echo(f"{r.name}\tpinned root v{r.pinned_root_version}\t{r.root_fingerprint}\t"
                   f"{r.added_at} by {r.added_by}")


@repo.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def repo_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show the whole trust state of a repository."""
    from appliance.render import render_trust_report
    from server.repositories.services import trust_report

    ctx.database()
    report = trust_report(ctx.settings, name)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(render_trust_report(report))


@repo.command("remove")
@click.argument("name")
@click.option("--archive", is_flag=True,
              help="Remove it even though bundles were imported into it: "
                   "its published tree moves to HOME/archive/repos/.")
@pass_ctx
def repo_remove(ctx: Context, name: str, archive: bool) -> None:
    """Remove a pin (refused once anything was imported, unless --archive)."""
    from appliance.importer import remove_repository

    ctx.database()
    removed = remove_repository(ctx.settings, name, current_operator(), archive=archive)
    where = f"; its published tree is archived in {removed.archived_to}" if removed.archived_to else ""
    click.echo(f"removed repository {removed.name}: devices no longer find it at /repos/{removed.name}/{where}")


@cli.command("import")
@click.argument("path", type=click.Path(exists=False))
@click.option("--operator", default=None, help="Who is importing (default: the login user).")
@pass_ctx
def import_(ctx: Context, path: str, operator: str | None) -> None:
    """Verify and publish a bundle (folder, media root, .tar or .tar.gz)."""
    from appliance.importer import import_bundle
    from appliance.progress import ProgressBar

    ctx.database()
    bar = ProgressBar("importing")
    try:
        result = import_bundle(ctx.settings, Path(path), operator or current_operator(), progress=bar)
    finally:
        bar.close()
    click.echo(result.message)


@cli.command()
@click.option("--bind", default=None, metavar="HOST:PORT", help="Address to listen on (default 127.0.0.1:8080).")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes.")
@click.option("--threads", type=int, default=None, help="Threads per worker.")
@click.pass_context
def serve(click_ctx: click.Context, bind: str | None, workers: int | None, threads: int | None) -> None:
    """Serve the repositories and API with gunicorn."""
    from appliance.serve import serve as run

    ctx: Context = click_ctx.obj
    ctx.overrides.update(bind=bind, workers=workers, threads=threads)
    ctx.database()
    run(ctx.settings)


@cli.command("settings")
@pass_ctx
def settings_cmd(ctx: Context) -> None:
    """Print every setting with its current value and help."""
    for name, f in SETTINGS.items():
        click.echo(f"{name} = {shown(ctx.settings, name)}\n    {f.metadata['help']}")


from appliance.cli_discovery import discovery, mdns  # noqa: E402 - commands from their own module

cli.add_command(discovery)
cli.add_command(mdns)


from appliance.cli_devices import devices, releases; cli.add_command(devices); cli.add_command(releases)  # noqa: E402,E702,I001

from appliance.cli_rollouts import rollouts; cli.add_command(rollouts)  # noqa: E402,E702,I001

from appliance.cli_reports import labels, reports; devices.add_command(labels); cli.add_command(reports)  # noqa: E402,E702,I001

from appliance.cli_export import register as _register_export; _register_export(cli)  # noqa: E402,E702,I001

from appliance.cli_users import register as _register_users; _register_users(cli)  # noqa: E402,E702,I001

from appliance.cli_backup import register as _register_backup; _register_backup(cli)  # noqa: E402,E702,I001

from appliance.cli_status import register as _register_status; _register_status(cli)  # noqa: E402,E702,I001

from appliance.cli_usb import register as _register_usb; _register_usb(cli)  # noqa: E402,E702,I001

from appliance.cli_timestamp import register as _register_timestamp; _register_timestamp(cli)  # noqa: E402,E702,I001

from appliance.cli_delivery import register as _register_delivery; _register_delivery(cli)  # noqa: E402,E702,I001

from appliance.cli_alerts import register as _register_alerts; _register_alerts(cli)  # noqa: E402,E702,I001

from appliance.cli_tls import register as _register_tls; _register_tls(cli)  # noqa: E402,E702,I001


def _home_given_here(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        target = ctx.find_object(Context)
        assert target is not None, "the airlock group's callback makes the Context before any subcommand parses"
        target.home = value


def accept_home_everywhere(group: click.Group) -> None:
    """Let ``--home DIR`` follow any subcommand, nested or not (``airlock
    devices list --home DIR``), as well as precede it: people type it where
    they think of it.  The last one given wins."""
    for command in group.commands.values():
        if not any(p.name == "home" for p in command.params):
            command.params.append(click.Option(["--home"], metavar="DIR", expose_value=False, help=HOME_HELP,
                                               callback=_home_given_here))
        if isinstance(command, click.Group):
            accept_home_everywhere(command)


accept_home_everywhere(cli)  # after every command is registered


def main(argv: list[str] | None = None) -> int:
    log = CommandLog(service=False).install()
    try:
        return _run(argv, log)
    finally:
        log.close()


def _run(argv: list[str] | None, log: CommandLog) -> int:
    click_ctx = None
    try:
        click_ctx = cli.make_context("airlock", list(sys.argv[1:] if argv is None else argv), obj=log)
        with click_ctx:
            cli.invoke(click_ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except (EOFError, KeyboardInterrupt):
        click.echo("airlock: aborted", err=True)
        return 1
    except AirlockError as exc:
        click.echo(f"airlock: error: {exc}", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("airlock: aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except OSError as exc:
        # a failed open may have been for writing (a lock file, say): check as a writer would
        denied = isinstance(exc, PermissionError) and exc.filename and (
            explain_denied(Path(exc.filename), write=True)
            or (exc.errno == errno.EPERM and explain_not_owner(Path(exc.filename))))
        click.echo(f"airlock: error: {denied or ''}" if denied else
                   f"airlock: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        return 1
    except DatabaseError as exc:
        ctx = click_ctx.obj if click_ctx is not None else None
        click.echo(f"airlock: error: {_database_error(exc, ctx if isinstance(ctx, Context) else None)}", err=True)
        return 1
    return 0


def _database_error(exc: DatabaseError, ctx: Context | None) -> str:
    """Name the file or folder that is in the way when SQLite may not write
    (it only says "attempt to write a readonly database")."""
    if ctx is not None and ctx._settings is not None and not ctx.read_only and not ctx._settings.database_url:
        db = ctx._settings.database_path
        denied = explain_denied(db, write=True) or explain_denied(Path(f"{db}-wal"), write=True)
        if denied:
            return denied
    return (f"the database cannot be used ({exc}); check the appliance home's "
            "permissions and free space, then `airlock init` to upgrade it")


if __name__ == "__main__":
    sys.exit(main())
