"""The udev rule that starts the USB import (udev/99-airlock-usb.rules):
its syntax (there is no udev daemon here to load it), that it matches only
USB block devices that hold a file system as they are added, and that the
unit it starts exists and runs `airlock usb-import` on that device."""

import re
from pathlib import Path

from appliance.cli import cli
from appliance.usb import MOUNT_FLAGS, mount_options

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "udev" / "99-airlock-usb.rules"
# udev(7): KEY or KEY{attribute}, an operator, a double-quoted value
_ASSIGNMENT = re.compile(r'^(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_.*-]+)\})?'
                         r'(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"$')
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "NAME", "SYMLINK", "SUBSYSTEM", "DRIVER", "ATTR", "SYSCTL", "KERNELS",
              "SUBSYSTEMS", "DRIVERS", "ATTRS", "TAGS", "ENV", "CONST", "TAG", "TEST", "PROGRAM", "RESULT"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL", "ENV", "TAG", "RUN",
               "LABEL", "GOTO", "IMPORT", "OPTIONS"}
NEEDS_ATTR = {"ATTR", "SYSCTL", "ATTRS", "ENV", "CONST", "TEST", "IMPORT", "SECLABEL", "RUN"}


def parse(text: str) -> list[list[dict]]:
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: keep each rule on one line"
        rule = []
        for part in re.split(r',\s*(?=[A-Z_]+(?:\{[^}]*\})?(?:==|!=|\+=|-=|:=|=)")', line):
            m = _ASSIGNMENT.match(part.strip())
            assert m, f"line {number}: {part!r} is not KEY[{{attr}}]OP\"value\""
            key, op = m["key"], m["op"]
            known = MATCH_KEYS if op in ("==", "!=") else ASSIGN_KEYS
            assert key in known, f"line {number}: {key} cannot be used with {op}"
            assert (m["attr"] is not None) == (key in NEEDS_ATTR) or key == "IMPORT", f"line {number}: {part}"
            rule.append(m.groupdict())
        rules.append(rule)
    return rules


def test_rule_file_parses_and_matches_only_usb_file_systems_as_they_are_added():
    (rule,) = parse(RULES.read_text())
    matches = {(r["key"], r["attr"]): r["value"] for r in rule if r["op"] == "=="}
    assert matches == {("ACTION", None): "add", ("SUBSYSTEM", None): "block", ("ENV", "ID_BUS"): "usb",
                       ("ENV", "ID_FS_USAGE"): "filesystem"}
    assigned = [(r["key"], r["attr"], r["op"], r["value"]) for r in rule if r["op"] != "=="]
    assert ("TAG", None, "+=", "systemd") in assigned
    assert ("ENV", "SYSTEMD_WANTS", "+=", "airlock-usb@%k.service") in assigned
    assert not [a for a in assigned if a[0] == "RUN"], "long work belongs in the unit, never in RUN"


def test_the_parser_refuses_what_udev_refuses():
    for bad in ('ACTION="add"x', 'ACTION=add', 'ENV=="x"', 'OWNER=="root"', 'action=="add"'):
        try:
            parse(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_the_unit_it_starts_runs_usb_import_on_that_device():
    unit = (ROOT / "systemd" / "airlock-usb@.service").read_text()
    assert "ExecStart=/opt/airlock/bin/airlock usb-import /dev/%I" in unit
    assert "DeviceAllow=/dev/%I r" in unit and "PrivateMounts=yes" in unit
    assert "usb-import" in cli.commands


def test_mount_options_are_read_only_nodev_nosuid_noexec():
    assert mount_options("ext4", 100, 101).split(",") == list(MOUNT_FLAGS) == ["ro", "nodev", "nosuid", "noexec"]
    vfat = mount_options("vfat", 100, 101).split(",")
    assert vfat[:4] == list(MOUNT_FLAGS) and "uid=100" in vfat and "gid=101" in vfat and "fmask=0137" in vfat


def test_only_the_file_systems_sticks_carry_are_mounted():
    from appliance.usb import STICK_FILE_SYSTEMS

    assert {"vfat", "exfat", "ext4"} <= STICK_FILE_SYSTEMS
    assert not {"btrfs", "hfsplus", "squashfs", "xfs", "udf"} & STICK_FILE_SYSTEMS
