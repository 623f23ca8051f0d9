"""`airlock-agent`: the reference device agent's command line (argparse: a
device has only the standard library and a few packages).  A thin shell:
parse, build an Agent, call it, print, exit with a code from ``ExitCode``
(the one table of exit codes; docs/agent.md lists the same, and
tests/functional/agent/test_exit_codes.py runs each)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path

from agent.config import AgentConfig, load_config
from agent.device import Agent
from agent.exceptions import (
    AgentError,
    DeviceRefusedError,
    NotAcceptedError,
    UnreachableError,
    UsageError,
)
from agent.identity import key_fingerprint
from agent.outcomes import CycleResult, Enrollment, UpdateOutcome


class ExitCode(IntEnum):
    """Every exit status of `airlock-agent`; device scripts rely on them."""

    OK = 0  # done
    # an update failed (reported), a report was refused for good, the appliance answered an error,
    # or a local file could not be used
    FAILED = 1
    USAGE = 2  # bad flags, a bad setting or a bad argument: fix the command or the configuration
    PENDING = 3  # the device waits for plant IT to accept it
    REFUSED = 4  # plant IT rejected or decommissioned the device (or its key)
    UNREACHABLE = 75  # the appliance did not answer (or answered 502/503/504): try again later (EX_TEMPFAIL)


# an error -> its exit code; the nearest class in the error's MRO wins, anything else is FAILED
EXIT_FOR_ERROR: dict[type[Exception], ExitCode] = {
    UsageError: ExitCode.USAGE,  # ConfigError too
    NotAcceptedError: ExitCode.PENDING,
    DeviceRefusedError: ExitCode.REFUSED,
    UnreachableError: ExitCode.UNREACHABLE,
}


def exit_code_for(exc: BaseException) -> ExitCode:
    for cls in type(exc).__mro__:
        if cls in EXIT_FOR_ERROR:
            return EXIT_FOR_ERROR[cls]
    return ExitCode.FAILED


def exit_code_for_round(result: CycleResult) -> ExitCode:
    """`run --once`: the first that applies, in this order."""
    if result.state is Enrollment.PENDING:
        return ExitCode.PENDING
    if result.state is Enrollment.REFUSED:
        return ExitCode.REFUSED
    if result.update is UpdateOutcome.FAILED:
        return ExitCode.FAILED
    if result.state is Enrollment.UNREACHABLE or result.update is UpdateOutcome.UNREACHABLE or result.reports_left:
        return ExitCode.UNREACHABLE
    return ExitCode.FAILED if result.errors else ExitCode.OK


# flag -> config setting
SETTINGS = {
    "state_dir": ("--state-dir", "DIR", "keys, token, spool, TUF metadata, downloads"),
    "appliance_url": ("--url", "URL", "the appliance, http(s)://HOST:PORT (default: discover by mDNS)"),
    "tls_fingerprint": ("--tls-fingerprint", "SHA256HEX", "pin the appliance's certificate (`airlock tls show`)"),
    "device_id": ("--device-id", "ID", "this device's id"),
    "hardware": ("--hardware", "MODEL", "hardware model"),
    "firmware": ("--firmware", "X.Y.Z", "firmware version running now"),
    "firmware_file": ("--firmware-file", "FILE", "file holding the running firmware version"),
    "repository": ("--repository", "NAME", "the vendor repository this device trusts"),
    "root_file": ("--root", "FILE", "the vendor's root.json (bootstraps TUF on first run)"),
    "install_hook": ("--install-hook", "COMMAND", "run as COMMAND VERIFIED_FILE"),
    "enrollment_token_file": ("--enrollment-token-file", "FILE", "pre-shared commissioning token"),
    "mdns_interfaces": ("--mdns-interfaces", "ADDRS", "comma-separated IPv4 addresses, or 'all'"),
    "log_level": ("--log-level", "LEVEL", "DEBUG, INFO, WARNING or ERROR"),
}


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    for name, (flag, metavar, text) in SETTINGS.items():
        common.add_argument(flag, dest=name, metavar=metavar, help=text)
    common.add_argument("--mdns", dest="mdns_enabled", action="store_true", default=None,
                        help="discover the appliance and advertise this device by mDNS")
    common.add_argument("--no-mdns", dest="mdns_enabled", action="store_false", help="no mDNS")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock-agent", description="Airlock's reference device agent.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    run = sub.add_parser("run", parents=[common], help="enroll, check in, take updates and report, on the "
                                                       "appliance's interval")
    run.add_argument("--once", action="store_true", help="one round, then exit")
    enroll = sub.add_parser("enroll", parents=[common], help="enroll (or get a new token)")
    enroll.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                        help="keep polling while pending for up to this long")
    enroll.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                        help="seconds between polls (default: the appliance's interval)")
    sub.add_parser("checkin", parents=[common], help="check in once and print the answer (installs nothing)")
    status = sub.add_parser("status", parents=[common], help="show the agent's state (no network)")
    status.add_argument("--json", action="store_true", help="print JSON")
    rep = sub.add_parser("report", parents=[common], help="send an error report (spooled until the appliance "
                                                          "has it)")
    rep.add_argument("--kind", required=True, choices=("crash", "error", "watchdog_reset", "log"))
    rep.add_argument("--severity", default="error", choices=("critical", "error", "warning", "info"))
    msg = rep.add_mutually_exclusive_group(required=True)
    msg.add_argument("--message", metavar="TEXT", help="what happened (at most 4000 characters)")
    msg.add_argument("--message-file", type=Path, metavar="FILE", help="read the message from FILE")
    rep.add_argument("--attach", type=Path, action="append", default=[], metavar="FILE",
                     help="attach a file, e.g. a log excerpt or a core dump (repeatable, at most 4)")
    sim = sub.add_parser("simulate", help="run a fleet of simulated devices in this process")
    sim.add_argument("--devices", type=int, required=True, metavar="N")
    sim.add_argument("--server", required=True, metavar="URL", help="the appliance, http://HOST:PORT")
    sim.add_argument("--duration", type=float, default=120.0, metavar="SECONDS", help="hard time limit")
    sim.add_argument("--interval", type=float, default=0.0, metavar="SECONDS",
                     help="check in again every SECONDS until the time limit (default: one round)")
    sim.add_argument("--hardware", default="plc-x", metavar="MODEL")
    sim.add_argument("--firmware", default="1.0.0", metavar="X.Y.Z")
    sim.add_argument("--enrollment-token-file", type=Path, metavar="FILE",
                     help="token of an auto-accept rule for the model (else devices stay pending)")
    sim.add_argument("--root", type=Path, metavar="FILE", help="the vendor's root.json, to verify updates")
    sim.add_argument("--repository", default="", metavar="NAME", help="the repository that root is for")
    sim.add_argument("--concurrency", type=int, default=32, metavar="THREADS")
    sim.add_argument("--id-prefix", default="", metavar="PREFIX", help="device ids are PREFIX-0, PREFIX-1 ...")
    sim.add_argument("--fail-install", type=float, default=0.0, metavar="PERCENT",
                     help="this share of the devices fails its install")
    sim.add_argument("--reboot-loop", type=float, default=0.0, metavar="PERCENT",
                     help="this share of the devices reboot-loops after an install")
    sim.add_argument("--fault-version", default="", metavar="X.Y.Z",
                     help="only installs of this version fail or loop (default: any)")
    sim.add_argument("--no-fetch", action="store_true",
                     help="take offers without downloading them (a load test of check-ins, reports and rollouts)")
    sim.add_argument("--state-dir", type=Path, metavar="DIR",
                     help="keep the devices' state here (keys, tokens), so a later run is the same fleet")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _config(args: argparse.Namespace) -> AgentConfig:
    overrides = {name: getattr(args, name) for name in [*SETTINGS, "mdns_enabled"]}
    config = load_config(args.config, overrides)
    logging.getLogger().setLevel(config.log_level)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    agent = Agent(_config(args))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    result = agent.run(stop, once=args.once)
    line = f"{agent.config.device_id}: {result.state}"
    if result.update:
        line += f", release {result.release_id}: {result.update}"
    if result.reports_left:
        line += f", {result.reports_left} report(s) spooled"
    print(line)
    for error in result.errors:
        print(f"  {error}", file=sys.stderr)
    return exit_code_for_round(result) if args.once else ExitCode.OK


def cmd_enroll(args: argparse.Namespace) -> int:
    config = _config(args)
    agent = Agent(config)
    wait = args.wait if args.wait is not None else config.enroll_wait
    answer = agent.enroll_waiting(wait, args.poll)
    print(f"{config.device_id}: accepted (check in every {answer.get('checkin_interval')} s)")
    return ExitCode.OK


def cmd_checkin(args: argparse.Namespace) -> int:
    agent = Agent(_config(args))
    print(json.dumps(agent.checkin_enrolling(), indent=1, sort_keys=True))
    return ExitCode.OK


def cmd_report(args: argparse.Namespace) -> int:
    agent = Agent(_config(args))
    message = args.message if args.message is not None else args.message_file.read_text(errors="replace")
    if len(args.attach) > 4:
        raise UsageError("at most 4 attachments per report")
    agent.error_report(args.kind, args.severity, message, args.attach)
    if agent.token is None:
        try:
            agent.enroll()
        except (UnreachableError, NotAcceptedError, DeviceRefusedError) as exc:
            print(f"report spooled; not sent yet: {exc}", file=sys.stderr)
            return exit_code_for(exc)
    result = agent.flush()
    if result is None or result.unreachable or result.left:
        print(f"report spooled; {len(agent.spool)} report(s) wait for the appliance", file=sys.stderr)
        return ExitCode.UNREACHABLE
    if result.dead:
        print("the appliance refused a report for good; it is kept in the spool's dead/ folder", file=sys.stderr)
        return ExitCode.FAILED
    print(f"{agent.config.device_id}: report delivered ({result.sent} sent, {result.duplicates} already there)")
    return ExitCode.OK


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args)
    agent = Agent(config)
    state = agent.state
    try:
        firmware = agent.firmware()
    except AgentError as exc:
        firmware = f"unknown ({exc})"
    pending = state.pending_install
    status = {
        "device_id": config.device_id, "hardware": config.hardware, "firmware": firmware,
        "appliance_url": config.appliance_url or "(mDNS)", "state_dir": str(config.state_dir),
        "key_fingerprint": key_fingerprint(agent.key), "enrollment": state.enrollment or "not enrolled",
        "token": "present" if agent.token else "none", "last_checkin": state.last_checkin,
        "tls_pin": config.tls_fingerprint or state.appliance_tls,
        "checkin_interval": state.checkin_interval, "spooled_reports": len(agent.spool),
        "dead_reports": len(list(agent.spool.dead.glob("*.json"))) // 2 if agent.spool.dead.exists() else 0,
        "pending_install": None if pending is None else {"release_id": pending.release_id,
                                                         "version": pending.version},
        "failed_attempts": {str(k): v for k, v in state.attempts.items()},
        "last_failure": state.last_failure, "error_counters": state.error_counters,
    }
    if args.json:
        print(json.dumps(status, indent=1, sort_keys=True))
    else:
        for key, value in status.items():
            print(f"{key:<18} {value if value not in (None, {}) else '-'}")
    return ExitCode.OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from agent.simulate import SimSettings, simulate

    summary = simulate(SimSettings(
        server=args.server.rstrip("/"), devices=args.devices, duration=args.duration, interval=args.interval,
        hardware=args.hardware, firmware=args.firmware, enrollment_token_file=args.enrollment_token_file,
        root_file=args.root, repository=args.repository, concurrency=args.concurrency, id_prefix=args.id_prefix,
        state_dir=args.state_dir, fail_install=args.fail_install, reboot_loop=args.reboot_loop,
        fault_version=args.fault_version, fetch=not args.no_fetch))
    print(json.dumps(summary.to_dict(), indent=1) if args.json else summary.text(args.server))
    return ExitCode.OK if summary.ok else ExitCode.FAILED


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "enroll": cmd_enroll, "checkin": cmd_checkin, "status": cmd_status, "report": cmd_report,
    "simulate": cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = getattr(args, "log_level", None) or ("WARNING" if args.command == "simulate" else "INFO")
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        return int(COMMANDS[args.command](args))
    except (AgentError, OSError, ValueError) as exc:
        print(f"airlock-agent: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
