"""``airlock reports ...`` (triage) and ``airlock devices labels`` (QR
labels): a thin shell over ``server.reports``.  Registered by
``appliance.cli``; the click context object is its ``Context``, used by duck
typing as in ``appliance.cli_devices``.

Report text came from devices and from people on the floor: every piece of
it is printed through ``_text``, which escapes control characters, so a
report cannot move the cursor, recolour or retitle an IT person's terminal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from appliance.render import current_operator
from signing.exceptions import AirlockError

STATUSES = ["new", "acknowledged", "resolved"]
LIST_MESSAGE = 60  # characters of the message shown per line by `reports list`


def _text(value) -> str:
    """``value`` with every non-printable character as a visible escape
    (``\\x1b``, ``\\n``...): safe to print to a terminal."""
    out = []
    for ch in str(value if value is not None else ""):
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def _services(ctx):
    from server.reports import services

    ctx.database()
    return services


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(_text(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def _one_line(message: str) -> str:
    first = message.splitlines()[0] if message else ""
    more = len(first) > LIST_MESSAGE or "\n" in message
    return first[:LIST_MESSAGE] + ("..." if more else "")


@click.group()
def reports() -> None:
    """Triage problem reports from devices and operators."""


@reports.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--status", type=click.Choice(STATUSES), help="Only reports in this status.")
@click.option("--device", "device_id", metavar="ID", help="Only reports about this device.")
@click.pass_obj
def reports_list(ctx, as_json: bool, status: str | None, device_id: str | None) -> None:
    """List reports, newest first (at most 500)."""
    found = _services(ctx).list_reports(status, device_id)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        click.echo("no reports" + (f" in status {status}" if status else "")
                   + (f" about {_text(device_id)}" if device_id else ""))
        return
    click.echo(_table([(r.id, r.created_at, r.device_id, r.source, r.kind, r.severity, r.status,
                        _one_line(r.message)) for r in found],
                      ("ID", "FILED", "DEVICE", "FROM", "KIND", "SEVERITY", "STATUS", "MESSAGE")))


def _render(d) -> str:
    s = d.summary
    lines = [f"report {s.id}: {s.kind} ({s.severity}) from {s.source}, about device {_text(s.device_id)}",
             f"  status {s.status}" + (f" since {d.status_changed_at} by {_text(d.status_changed_by)}"
                                       if d.status_changed_at else ""),
             f"  filed {s.created_at}" + (f", happened {_text(d.occurred_at)}" if d.occurred_at else "")
             + (f", report id {d.report_id}" if d.report_id else ""),
             f"  firmware {_text(d.firmware or 'unknown')}"]
    if d.reporter:
        lines.append(f"  reported by {_text(d.reporter)}")
    lines.append("  message:")
    lines += [f"    | {_text(line)}" for line in s.message.split("\n")]
    snap = d.snapshot
    if snap:
        lines.append(f"  device when filed ({snap.get('taken_at')}): state {_text(snap.get('state'))}, "
                     f"firmware {_text(snap.get('firmware'))}, last check-in {snap.get('last_checkin') or 'never'}, "
                     f"{'online' if snap.get('online') else 'not online'}, "
                     f"health {_text(', '.join(snap.get('health') or []) or 'ok')}")
        for name, value in sorted((snap.get("metrics") or {}).items()):
            lines.append(f"    {_text(name)}: {_text(json.dumps(value))}")
        update = snap.get("last_update")
        if update:
            lines.append(f"    last update: release {update.get('release_id')} ({_text(update.get('version'))}) "
                         f"{_text(update.get('step'))}" + (f": {_text(update['reason'])}" if update.get("reason")
                                                           else ""))
    lines.append("  attachments:" + ("" if d.attachments else " none"))
    for a in d.attachments:
        lines.append(f"    {_text(a.name)}  {a.size} bytes  sha256 {a.sha256}  {_text(a.path)}")
    lines.append("  notes:" + ("" if d.notes else " none"))
    for n in d.notes:
        head = f"    {n.at} {_text(n.author)}: {n.action}"
        lines.append(head + (f": {_text(n.text)}" if n.text else ""))
    return "\n".join(lines)


@reports.command("show")
@click.argument("report_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def reports_show(ctx, report_id: int, as_json: bool) -> None:
    """Show one report: message, device snapshot, attachments, notes."""
    detail = _services(ctx).show_report(ctx.settings, report_id)
    click.echo(json.dumps(detail.to_dict(), indent=2) if as_json else _render(detail))


@reports.command("ack")
@click.argument("report_id", type=int)
@click.option("--note", help="A note for the record (who is on it, what next).")
@click.pass_obj
def reports_ack(ctx, report_id: int, note: str | None) -> None:
    """Acknowledge a new report: someone is on it."""
    _services(ctx).acknowledge(report_id, current_operator(), note)
    click.echo(f"report {report_id} acknowledged")


@reports.command("resolve")
@click.argument("report_id", type=int)
@click.option("--note", help="How it was resolved.")
@click.pass_obj
def reports_resolve(ctx, report_id: int, note: str | None) -> None:
    """Resolve a new or acknowledged report."""
    _services(ctx).resolve(report_id, current_operator(), note)
    click.echo(f"report {report_id} resolved")


@reports.command("reopen")
@click.argument("report_id", type=int)
@click.option("--note", help="Why it is back (the problem returned, the fix did not hold...).")
@click.pass_obj
def reports_reopen(ctx, report_id: int, note: str | None) -> None:
    """Reopen a resolved report: it is new again, back in triage."""
    _services(ctx).reopen(report_id, current_operator(), note)
    click.echo(f"report {report_id} reopened: it is new again")


@reports.command("note")
@click.argument("report_id", type=int)
@click.argument("text")
@click.pass_obj
def reports_note(ctx, report_id: int, text: str) -> None:
    """Add a note to a report without changing its status."""
    _services(ctx).add_note(report_id, current_operator(), text)
    click.echo(f"noted on report {report_id}")


@click.command("labels")
@click.argument("device_ids", nargs=-1, metavar="[IDS...]")
@click.option("--format", "fmt", type=click.Choice(["svg"]), default="svg", show_default=True,
              help="Sheet format (SVG; print it from any browser or vector editor).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the sheet here (default: standard output).")
@click.pass_obj
def labels(ctx, device_ids: tuple[str, ...], fmt: str, out: str | None) -> None:
    """Print QR labels for reporting problems: for IDS (each replaces its old
    label), or for every accepted device without one."""
    from server.reports.labels import issue_labels
    from server.reports.sheet import render_svg

    ctx.database()
    made = issue_labels(ctx.settings, list(device_ids), current_operator())
    if not made:
        raise AirlockError("no device needs a label: every accepted device has one (name IDS to replace theirs)")
    sheet = render_svg(made)
    if out is None:
        click.echo(sheet, nl=False)
        return
    path = Path(out)
    # never follow a link or overwrite: a new label sheet holds new keys
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(sheet)
    click.echo(f"wrote {len(made)} label{'s' if len(made) != 1 else ''} to {_text(path)}: "
               + ", ".join(_text(label.device_id) for label in made), err=True)
