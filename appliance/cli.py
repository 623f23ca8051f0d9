"""``airlock``: the appliance's command line.  A thin shell: each command
parses its input, calls a service, prints the result; any refusal is one
line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
import peewee

from appliance.render import current_operator
from server import bind_database
from server.db import check_schema
from server.settings import SETTINGS, load_settings
from signing.exceptions import AirlockError

logger = logging.getLogger(__name__)


class Context:
    def __init__(self, home: str | None, overrides: dict):
        self.home = home
        self.overrides = overrides
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            self._settings = load_settings(self.home, self.overrides)
        return self._settings

    def database(self):
        if not self.settings.database_path.exists():
            raise AirlockError(f"no appliance database at {self.settings.database_path}: run `airlock init` "
                               "first, or point --home (or AIRLOCK_HOME) at the appliance's folder")
        db = bind_database(self.settings)
        check_schema(db)
        return db


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="AIRLOCK_HOME", default=None, metavar="DIR",
              help="Appliance state folder (env AIRLOCK_HOME, default /var/lib/airlock).")
@click.version_option(package_name="airlock")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """Airlock: TUF update appliance for air-gapped plants."""
    ctx.obj = Context(home, {})


@cli.command()
@click.option("--admin", metavar="NAME", help="Create this console administrator.")
@click.option("--password-file", type=click.Path(dir_okay=False, exists=True), help="File holding the admin password.")
@pass_ctx
def init(ctx: Context, admin: str | None, password_file: str | None) -> None:
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
    result = initialise(ctx.settings, admin, password, current_operator())
    click.echo(f"home {result.home}; appliance id {result.appliance_id}")
    for m in result.migrations_applied:
        click.echo(f"applied migration {m}")
    if not result.migrations_applied:
        click.echo("database schema is up to date")
    if result.admin_created:
        click.echo(f"created admin {result.admin_created}")


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
        click.echo(f"{r.name}\tpinned root v{r.pinned_root_version}\t{r.root_fingerprint}\t{r.added_at} by {r.added_by}")


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
        click.echo(f"{name} = {getattr(ctx.settings, name)}\n    {f.metadata['help']}")


from appliance.cli_discovery import discovery, mdns  # noqa: E402 - commands from their own module

cli.add_command(discovery)
cli.add_command(mdns)


from appliance.cli_devices import devices, releases; cli.add_command(devices); cli.add_command(releases)  # noqa: E402,E702,I001

from appliance.cli_reports import labels, reports; devices.add_command(labels); cli.add_command(reports)  # noqa: E402,E702,I001

from appliance.cli_export import register as _register_export; _register_export(cli)  # noqa: E402,E702,I001


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("AIRLOCK_LOG_LEVEL", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cli.main(args=argv, prog_name="airlock", standalone_mode=False)
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
        click.echo(f"airlock: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        return 1
    except peewee.DatabaseError as exc:
        click.echo(f"airlock: error: the database cannot be used ({exc}); check the appliance home's "
                   "permissions and free space, then `airlock init` to upgrade it", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
