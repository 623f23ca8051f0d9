"""Health metrics read from /proc and /sys (never process data): uptime,
free memory, free storage, CPU temperature; boot count and last reset
reason kept in the state folder; optional vendor gauges and counters."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from pathlib import Path

from agent._files import read_json, write_json

logger = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
RESET_REASON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,63}$")
MAX_COUNT = 2**53
MAX_NAMED = 64
BOOT_FILE = "boot.json"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read(4096)
    except OSError:
        return None


def uptime_s(proc: str = "/proc") -> int | None:
    text = _read(f"{proc}/uptime")
    try:
        return int(float(text.split()[0])) if text else None
    except (ValueError, IndexError):
        return None


def mem_free_bytes(proc: str = "/proc") -> int | None:
    text = _read(f"{proc}/meminfo") or ""
    values = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE))
    kb = values.get("MemAvailable") or values.get("MemFree")
    return int(kb) * 1024 if kb is not None else None


def storage_free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def cpu_temp_c(sys: str = "/sys") -> float | None:
    """The hottest thermal zone, in °C (the kernel gives millidegrees)."""
    temps = []
    for path in sorted(glob.glob(f"{sys}/class/thermal/thermal_zone*/temp"))[:32]:
        text = _read(path)
        try:
            value = int(text.strip()) / 1000 if text else None
        except ValueError:
            continue
        if value is not None and -100 <= value <= 250:
            temps.append(value)
    return round(max(temps), 1) if temps else None


def boot_id(proc: str = "/proc") -> str | None:
    text = _read(f"{proc}/sys/kernel/random/boot_id")
    return text.strip() if text else None


def note_boot(state_dir: Path, reset_reason_file: Path | None = None) -> dict:
    """Count boots: a boot id the state folder has not seen is a new boot.
    The last reset reason comes from the platform's file if configured,
    else from a reboot the agent itself asked for (an install), else it is
    unknown."""
    path = state_dir / BOOT_FILE
    boot = read_json(path, {"boot_count": 0, "boot_id": None, "last_reset_reason": None,
                            "planned_reboot": False})
    current = boot_id()
    if current is not None and current != boot.get("boot_id"):
        boot["boot_count"] = int(boot.get("boot_count", 0)) + 1
        boot["boot_id"] = current
        reason = "software" if boot.get("planned_reboot") else ("power-on" if boot["boot_count"] == 1 else "unknown")
        boot["planned_reboot"] = False
        if reset_reason_file is not None:
            text = (_read(str(reset_reason_file)) or "").strip()
            reason = text if RESET_REASON.match(text) else reason
        boot["last_reset_reason"] = reason
        write_json(path, boot)
    return boot


def plan_reboot(state_dir: Path) -> None:
    """Remember that the next boot is one the agent asked for (an install)."""
    path = state_dir / BOOT_FILE
    boot = read_json(path, {})
    boot["planned_reboot"] = True
    write_json(path, boot)


def _named(values: object, limit_name: str) -> dict[str, int | float]:
    if not isinstance(values, dict):
        return {}
    out = {}
    for name, value in list(values.items())[:MAX_NAMED]:
        if NAME.match(str(name)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            if limit_name == "error_counters" and (not isinstance(value, int) or not 0 <= value <= MAX_COUNT):
                continue
            if limit_name == "gauges" and not -1e15 <= value <= 1e15:
                continue
            out[name] = value
    return out


def collect(state_dir: Path, reset_reason_file: Path | None = None, metrics_file: Path | None = None,
            error_counters: dict | None = None) -> dict:
    """The metrics of one check-in; a metric that cannot be read is left out."""
    boot = note_boot(state_dir, reset_reason_file)
    metrics = {"uptime_s": uptime_s(), "boot_count": boot.get("boot_count") or None,
               "last_reset_reason": boot.get("last_reset_reason"), "cpu_temp_c": cpu_temp_c(),
               "mem_free_bytes": mem_free_bytes(), "storage_free_bytes": storage_free_bytes(state_dir)}
    counters = dict(error_counters or {})
    if metrics_file is not None:
        try:
            vendor = json.loads(metrics_file.read_text())
        except (OSError, ValueError) as exc:
            logger.warning("metrics file %s is unreadable: %s", metrics_file, exc)
            vendor = {}
        if isinstance(vendor, dict):
            counters.update(_named(vendor.get("error_counters"), "error_counters"))
            gauges = _named(vendor.get("gauges"), "gauges")
            if gauges:
                metrics["gauges"] = gauges
    counters = _named(counters, "error_counters")
    if counters:
        metrics["error_counters"] = counters
    return {k: v for k, v in metrics.items() if v is not None}
