"""``airlock devices ...`` and ``airlock releases ...``: a thin shell over
``server.devices.services``.  Registered by ``appliance.cli``; the click
context object is its ``Context`` (``.settings``, ``.database()``), used by
duck typing so that this module never imports ``appliance.cli`` (which runs
as ``__main__`` under ``python -m``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from appliance.cli_rollouts import gate_options, render, spec_from
from appliance.render import _safe, current_operator
from signing.exceptions import AirlockError


def _services(ctx):
    from server.devices import services

    ctx.database()
    return services


def _table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(_safe(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


@click.group()
def devices() -> None:
    """Admit, inspect and tag devices."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--state", type=click.Choice(["pending", "accepted", "rejected", "decommissioned", "offline"]),
              help="Only devices in this state (offline: accepted but missed 3 check-ins).")
@click.pass_obj
def devices_list(ctx, as_json: bool, state: str | None) -> None:
    """List devices: id, model, firmware, state, last seen, health flags."""
    found = _services(ctx).list_devices(ctx.settings, state)
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in found], indent=2))
        return
    if not found:
        click.echo("no devices" + (f" in state {state}" if state else " have enrolled yet"))
        return
    click.echo(_table([(d.device_id, d.hardware, d.firmware, d.state, d.last_seen or "never",
                        ",".join(d.health) or "-") for d in found],
                      ("DEVICE", "MODEL", "FIRMWARE", "STATE", "LAST SEEN", "HEALTH")))


@devices.command("show")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def devices_show(ctx, device_id: str, as_json: bool) -> None:
    """Show one device: keys, latest metrics, history kept, update reports."""
    d = _services(ctx).show_device(ctx.settings, device_id)
    if as_json:
        click.echo(json.dumps(d.to_dict(), indent=2))
        return
    s = d.summary
    lines = [f"device {_safe(s.device_id)}",
             f"  model {_safe(s.hardware)}, firmware {_safe(s.firmware)}",
             f"  state {s.state} since {d.state_changed_at} by {_safe(d.state_changed_by)}"
             + (f" ({_safe(s.state_reason)})" if s.state_reason else ""),
             f"  enrolled {d.enrolled_at}, last enrollment {d.last_enroll_at}",
             f"  last seen {s.last_seen or 'never'}" + (f" from {d.last_address}" if d.last_address else "")
             + f", {d.checkins} check-ins, {'online' if s.online else 'not online'}",
             f"  health: {', '.join(s.health) or 'ok'}",
             f"  tags: {', '.join(s.tags) or 'none'}",
             f"  token issued: {d.token_issued_at or 'none (no valid credential)'}",
             "  keys (sha256 of the raw Ed25519 key):"]
    for k in d.keys:
        decided = f", decided {k.decided_at} by {_safe(k.decided_by)}" if k.decided_at else ""
        lines.append(f"    {k.fingerprint}  {k.state}  (since {k.created_at}{decided})")
    lines.append("  latest metrics:" + ("" if d.metrics else " none"))
    for name, value in sorted(d.metrics.items()):
        lines.append(f"    {_safe(name)}: {_safe(json.dumps(value))}")
    lines.append(f"  history kept: {d.history['raw']} raw, {d.history['hourly']} hourly, {d.history['daily']} daily")
    lines.append("  update history:" + ("" if d.update_history else " none"))
    for h in d.update_history:
        release = f"release {h.release_id} ({_safe(h.version)})" if h.release_id else _safe(h.version)
        where = f", rollout {h.rollout_id} wave {h.wave}" if h.rollout_id else ""
        why = f": {_safe(h.detail)}" if h.detail else ""
        lines.append(f"    {h.at}  {release}{where}  {h.event}{why}")
    click.echo("\n".join(lines))


@devices.command("accept")
@click.argument("device_id")
@click.option("--new-key", is_flag=True, help="Accept the device's pending new key instead (retires the old one).")
@click.option("--key-fingerprint", metavar="SHA256HEX", help="With --new-key: the key the device shows; refused "
              "if the pending key differs.")
@click.pass_obj
def devices_accept(ctx, device_id: str, new_key: bool, key_fingerprint: str | None) -> None:
    """Accept a pending device (or, with --new-key, its new key)."""
    if key_fingerprint and not new_key:
        raise AirlockError("--key-fingerprint goes with --new-key")
    _services(ctx).accept(device_id, current_operator(), new_key=new_key, key_fingerprint_hex=key_fingerprint)
    click.echo(f"accepted the new key of {device_id}; it gets a token at its next enrollment" if new_key
               else f"accepted {device_id}; it gets a token at its next enrollment")


@devices.command("reject")
@click.argument("device_id")
@click.option("--new-key", is_flag=True, help="Reject the device's pending new key only.")
@click.option("--reason", help="Why (shown to the device and in `devices show`).")
@click.pass_obj
def devices_reject(ctx, device_id: str, new_key: bool, reason: str | None) -> None:
    """Reject a device (its token stops working at once), or its new key."""
    _services(ctx).reject(device_id, current_operator(), new_key=new_key, reason=reason)
    click.echo(f"rejected the new key of {device_id}" if new_key else f"rejected {device_id}")


@devices.command("decommission")
@click.argument("device_id")
@click.option("--reason", help="Why (shown in `devices show`).")
@click.pass_obj
def devices_decommission(ctx, device_id: str, reason: str | None) -> None:
    """Retire a device: its token stops working at once."""
    _services(ctx).decommission(device_id, current_operator(), reason=reason)
    click.echo(f"decommissioned {device_id}")


@devices.command("remove")
@click.argument("device_id")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@click.pass_obj
def devices_remove(ctx, device_id: str, as_json: bool) -> None:
    """Remove a device from the inventory for good, with everything recorded
    about it (its token stops working; export first to keep its reports)."""
    r = _services(ctx).remove_device(ctx.settings, device_id, current_operator())
    if as_json:
        click.echo(json.dumps(r.to_dict(), indent=2))
        return
    click.echo(f"removed {_safe(r.device_id)} (it was {r.state}) with {r.reports} reports, {r.update_reports} "
               f"update reports and {r.metric_samples} metric samples; the audit log keeps the removal")


@devices.command("tag")
@click.argument("device_id")
@click.argument("tag")
@click.pass_obj
def devices_tag(ctx, device_id: str, tag: str) -> None:
    """Add a device to a group (releases can target a group)."""
    added = _services(ctx).tag(device_id, tag, current_operator())
    click.echo(f"tagged {device_id} {tag}" if added else f"{device_id} already has tag {tag}")


@devices.command("untag")
@click.argument("device_id")
@click.argument("tag")
@click.pass_obj
def devices_untag(ctx, device_id: str, tag: str) -> None:
    """Remove a device from a group."""
    removed = _services(ctx).untag(device_id, tag, current_operator())
    click.echo(f"removed tag {tag} from {device_id}" if removed else f"{device_id} has no tag {tag}")


@devices.command("maintain")
@click.pass_obj
def devices_maintain(ctx) -> None:
    """Roll up and prune the metric history now."""
    r = _services(ctx).run_maintenance(ctx.settings)
    click.echo(f"rolled up {r.raw_rolled_up} raw samples and {r.hourly_rolled_up} hourly rollups, dropped "
               f"{r.daily_dropped} daily rollups and {r.nonces_pruned} old nonces in {r.seconds:.1f} s")


@devices.group("auto-accept")
def auto_accept() -> None:
    """Rules that accept new devices at once: hardware model + pre-shared token."""


@auto_accept.command("add")
@click.option("--hardware", required=True, metavar="MODEL", help="Hardware model the rule applies to.")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="File holding the enrollment token (only its SHA-256 is stored).")
@click.option("--note", default="", help="What the rule is for (e.g. the commissioning batch).")
@click.pass_obj
def auto_accept_add(ctx, hardware: str, token_file: str, note: str) -> None:
    """Add a rule: MODEL devices enrolling with the token are accepted at once."""
    token = Path(token_file).read_text(encoding="ascii", errors="replace").strip()
    rule = _services(ctx).add_rule(hardware, token, current_operator(), note)
    click.echo(f"rule {rule.id}: {rule.hardware} devices enrolling with this token are accepted at once")


@auto_accept.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def auto_accept_list(ctx, as_json: bool) -> None:
    """List auto-acceptance rules (tokens are never shown: only hashes are kept)."""
    rules = _services(ctx).list_rules()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rules], indent=2))
    elif not rules:
        click.echo("no auto-accept rules: every new device waits for `airlock devices accept`")
    else:
        click.echo(_table([(r.id, r.hardware, r.created_at, r.created_by, r.note) for r in rules],
                          ("RULE", "MODEL", "CREATED", "BY", "NOTE")))


@auto_accept.command("remove")
@click.argument("rule_id", type=int)
@click.pass_obj
def auto_accept_remove(ctx, rule_id: int) -> None:
    """Remove a rule (devices it accepted stay accepted)."""
    rule = _services(ctx).remove_rule(rule_id, current_operator())
    click.echo(f"removed rule {rule.id} for {rule.hardware}")


@click.group()
def releases() -> None:
    """Approve which firmware devices install."""


@releases.command("approve")
@click.argument("repository")
@click.argument("target_path")
@click.option("--hardware", metavar="MODEL", help="Release to every device of this hardware model.")
@click.option("--group", metavar="TAG", help="Release to the devices tagged TAG (wins over a hardware release).")
@click.option("--allow-downgrade", is_flag=True, help="Also to devices running a newer version.")
@click.option("--wave", "waves", multiple=True, metavar="WAVE",
              help="Roll it out in waves (10%, group:TAG; repeat it) instead of to every device at once.")
@gate_options
@click.pass_obj
def releases_approve(ctx, repository: str, target_path: str, hardware: str | None, group: str | None,
                     allow_downgrade: bool, waves: tuple[str, ...], soak: str, min_success: int,
                     min_sample: int) -> None:
    """Approve a target of a pinned repository for a model or a group."""
    services = _services(ctx)
    if waves:
        from server.rollouts import services as rollout_services

        r, rollout = rollout_services.approve_with_rollout(
            ctx.settings, repository, target_path, current_operator(), spec_from(waves, soak, min_success, min_sample),
            hardware=hardware, group=group, allow_downgrade=allow_downgrade)
        click.echo(f"release {r.id}: {r.repository} {_safe(r.target_path)} version {r.version} for {r.scope}, "
                   f"rolled out in {len(rollout.waves)} waves")
        click.echo(render(rollout))
        return
    r = services.approve(ctx.settings, repository, target_path, current_operator(), hardware=hardware, group=group,
                         allow_downgrade=allow_downgrade)
    click.echo(f"release {r.id}: {r.repository} {_safe(r.target_path)} version {r.version} for {r.scope}"
               + (" (downgrade allowed)" if r.allow_downgrade else ""))
    if r.shadows:
        by_id = {x.id: x for x in services.list_releases()}
        for old in (by_id[i] for i in r.shadows if i in by_id):
            newer = " (a newer version: devices on it, or on this one, are offered nothing)" \
                if services.version_key(old.version) > services.version_key(r.version) else ""
            click.echo(f"note: release {old.id} ({_safe(old.target_path)} version {old.version}{newer}) for "
                       f"{old.scope} is now shadowed: check-ins offer release {r.id} instead; withdraw the one you "
                       "do not want with `airlock releases withdraw ID`")


@releases.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "include_withdrawn", is_flag=True, help="Include withdrawn releases.")
@click.pass_obj
def releases_list(ctx, as_json: bool, include_withdrawn: bool) -> None:
    """List releases, newest first."""
    found = _services(ctx).list_releases(include_withdrawn)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
    elif not found:
        click.echo("no releases: approve one with `airlock releases approve REPO TARGET --hardware MODEL`")
    else:
        click.echo(_table([(r.id, r.repository, r.target_path, r.version, r.scope,
                            "yes" if r.allow_downgrade else "no", f"{r.approved_at} by {r.approved_by}",
                            f"withdrawn {r.withdrawn_at}" if r.withdrawn_at
                            else f"shadowed by {r.shadowed_by}" if r.shadowed_by else "active") for r in found],
                          ("ID", "REPO", "TARGET", "VERSION", "FOR", "DOWNGRADE", "APPROVED", "STATUS")))


@releases.command("withdraw")
@click.argument("release_id", type=int)
@click.pass_obj
def releases_withdraw(ctx, release_id: int) -> None:
    """Withdraw a release: check-ins stop offering it."""
    r = _services(ctx).withdraw(release_id, current_operator())
    click.echo(f"withdrew release {r.id} ({r.repository} {_safe(r.target_path)} for {r.scope})")
