"""``airlock rollouts ...`` (and ``releases approve --wave``): a thin shell
over ``server.rollouts.services``.  Registered by ``appliance.cli``."""

from __future__ import annotations

import json
import re

import click

from appliance.render import _safe, current_operator

_DURATION = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _services(ctx):
    from server.rollouts import services

    ctx.database()
    return services


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1d`` or plain seconds, as seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration: give seconds, or a number with s, m, h or d (30m)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def gate_options(f):
    """The thresholds a rollout is created with (shared with `releases approve`)."""
    f = click.option("--min-sample", type=int, default=5, show_default=True,
                     help="Finished devices a wave needs before its failure rate can halt it.")(f)
    f = click.option("--min-success", type=int, default=95, show_default=True,
                     help="Percent of a wave's devices that must succeed and stay healthy.")(f)
    f = click.option("--soak", default="1h", show_default=True,
                     help="How long each wave runs before the next may start (30m, 2h, 1d, seconds).")(f)
    return f


def spec_from(waves: tuple[str, ...], soak: str, min_success: int, min_sample: int):
    from server.rollouts.records import RolloutSpec

    return RolloutSpec(list(waves), parse_duration(soak), min_success, min_sample)


def render(r) -> str:
    lines = [f"rollout {r.id}: release {r.release_id} ({r.repository} {_safe(r.target_path)} version {r.version}): "
             f"{r.state}, wave {r.current_wave} of {len(r.waves)}",
             f"  gates: soak {r.soak} s, at least {r.min_success}% succeed and stay healthy, "
             f"judged after {r.min_sample} finished",
             f"  created {r.created_at} by {_safe(r.created_by)}, updated {r.updated_at}"]
    if r.halt_reason:
        lines.append(f"  {'halted' if r.state == 'halted' else 'stopped'}: {_safe(r.halt_reason)}"
                     + (f" at {r.halted_at}" if r.halted_at else ""))
    lines.append(f"  {'WAVE':<6}{'TARGET':<18}{'SIZE':>6}{'OFFERED':>9}{'OK':>6}{'FAILED':>8}"
                 f"{'UNHEALTHY':>11}  STARTED")
    for w in r.waves:
        lines.append(f"  {w.number:<6}{_safe(w.target):<18}{'-' if w.size is None else w.size:>6}{w.offered:>9}"
                     f"{w.succeeded:>6}{w.failed:>8}{w.unhealthy:>11}  {w.started_at or 'not yet'}")
    return "\n".join(lines)


@click.group()
def rollouts() -> None:
    """Roll a release out wave by wave, gated on the devices' health."""


@rollouts.command("create")
@click.argument("release_id", type=int)
@click.option("--wave", "waves", multiple=True, required=True, metavar="WAVE",
              help="A wave, in order: a cumulative percentage of the devices (10%) or group:TAG. Repeat it.")
@gate_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def rollouts_create(ctx, release_id: int, waves: tuple[str, ...], soak: str, min_success: int, min_sample: int,
                    as_json: bool) -> None:
    """Put an approved release under a staged rollout; wave 1 starts now."""
    r = _services(ctx).create(ctx.settings, release_id, spec_from(waves, soak, min_success, min_sample),
                              current_operator())
    click.echo(json.dumps(r.to_dict(), indent=2) if as_json else render(r))


@rollouts.command("list")
@click.option("--state", type=click.Choice(["running", "paused", "halted", "aborted", "completed"]),
              help="Only rollouts in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def rollouts_list(ctx, state: str | None, as_json: bool) -> None:
    """List rollouts, newest first."""
    found = _services(ctx).list_rollouts(state, ctx.settings)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
    elif not found:
        click.echo("no rollouts: create one with `airlock rollouts create RELEASE --wave 10% --wave 100%`")
    else:
        for r in found:
            halted = f" ({_safe(r.halt_reason)})" if r.state in ("halted", "aborted") and r.halt_reason else ""
            click.echo(f"{r.id}  release {r.release_id} {r.version}  {r.state}  wave {r.current_wave}/{len(r.waves)}"
                       + halted)


@rollouts.command("show")
@click.argument("rollout_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def rollouts_show(ctx, rollout_id: int, as_json: bool) -> None:
    """Show a rollout: its state, gates and each wave's counts."""
    r = _services(ctx).show(rollout_id, ctx.settings)
    click.echo(json.dumps(r.to_dict(), indent=2) if as_json else render(r))


def _step(name: str, doc: str):
    @rollouts.command(name, help=doc)
    @click.argument("rollout_id", type=int)
    @click.pass_obj
    def command(ctx, rollout_id: int) -> None:
        r = getattr(_services(ctx), name)(rollout_id, current_operator())
        click.echo(f"rollout {r.id}: {r.state}, wave {r.current_wave} of {len(r.waves)}")
    return command


_step("pause", "Pause: devices not offered the release yet get nothing until it resumes.")
_step("resume", "Resume a paused or halted rollout (after a halt the wave's gate counts afresh).")
_step("advance", "Start the next wave now, whatever the gate says (after the last: complete).")


@rollouts.command("abort")
@click.argument("rollout_id", type=int)
@click.option("--reason", default="", help="Why, for the record.")
@click.pass_obj
def rollouts_abort(ctx, rollout_id: int, reason: str) -> None:
    """Abort for good: devices not offered the release yet never are."""
    r = _services(ctx).abort(rollout_id, current_operator(), reason)
    click.echo(f"rollout {r.id}: aborted in wave {r.current_wave}; withdraw release {r.release_id} with "
               f"`airlock releases withdraw {r.release_id}` if no device should get it")


@rollouts.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def rollouts_check(ctx, as_json: bool) -> None:
    """Evaluate the running rollouts' gates now (serve does it every rollout_check_interval)."""
    verdicts = _services(ctx).evaluate(ctx.settings)
    if as_json:
        click.echo(json.dumps([v.__dict__ for v in verdicts], indent=2))
    for v in verdicts if not as_json else ():
        click.echo(f"rollout {v.rollout_id}: {v.action}: {_safe(v.reason)}")
    if not verdicts and not as_json:
        click.echo("no running rollouts")
