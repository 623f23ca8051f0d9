"""``airlock usb-import DEVICE``: import the bundle on a USB stick when it is
plugged in.

The udev rule (``udev/99-airlock-usb.rules``) starts
``airlock-usb@<kernel name>.service`` for every block device with a file
system on the USB bus; the service runs this as root, in a mount namespace
of its own, because only root may mount.  It mounts the partition read-only,
``nodev,nosuid,noexec`` (checked in ``/proc/self/mountinfo`` after the
mount: a kernel that ignored a flag stops it), in a private folder readable
by the home's group only.  A stick without an ``airlock/`` folder at its
root is ignored (logged) and unmounted.  Otherwise the import runs as
``airlock import MOUNT`` under the home's owner (never as root, so that
everything it writes belongs to the service user; Python starts as root
and gives root up before the import begins), which records the
outcome in the import history like any import; then the stick is
unmounted, whatever happened.

Export on insert: a stick that carries an ``airlock-export/`` folder gets
the pending export written into it (``airlock export``, as the home's
owner, after the import if there is a bundle too): the file system is
remounted read-write (still nodev,nosuid,noexec) for that alone.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from server.settings import Settings
from signing.exceptions import AirlockError
from signing.paths import show

logger = logging.getLogger(__name__)

MOUNT_FLAGS = ("ro", "nodev", "nosuid", "noexec")
BUNDLE, EXPORT_FOLDER = "airlock", "airlock-export"
# file systems without owners on disk: give the files to the home's owner, readable by no one else
OWNERLESS = {"vfat", "exfat", "ntfs", "ntfs3", "msdos", "iso9660", "udf"}
IMPORT_TIMEOUT = 6 * 3600  # seconds, as the unit's TimeoutStartSec
TOOL_TIMEOUT = 60  # seconds for blkid, mount, umount


class UsbError(AirlockError):
    """The device cannot be mounted or imported from."""


@dataclass
class UsbResult:
    device: str
    status: str  # what was done: imported, refused, exported, export failed (comma-separated), or ignored
    message: str
    exit_code: int


def resolve_device(name: str) -> Path:
    """``sdb1`` (udev's %k) or ``/dev/sdb1``: a block device under /dev."""
    if not name or "\x00" in name or len(name) > 255:
        raise UsbError("give the device, e.g. sdb1 or /dev/sdb1")
    path = Path(name) if name.startswith("/") else Path("/dev") / name
    if not path.is_relative_to("/dev") or ".." in path.parts:
        raise UsbError(f"{show(name)} is not a device under /dev")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsbError(f"{show(str(path))} does not exist (the stick was pulled?)") from None
    if not stat.S_ISBLK(mode):
        raise UsbError(f"{show(str(path))} is not a block device")
    return path


# What USB sticks are formatted with; a hostile stick could carry any file
# system the kernel knows, and its driver would parse it as root.
STICK_FILE_SYSTEMS = frozenset({"vfat", "exfat", "ext2", "ext3", "ext4", "ntfs", "ntfs3"})


def mount_options(fstype: str, uid: int, gid: int) -> str:
    options = list(MOUNT_FLAGS)
    if fstype in OWNERLESS:
        options += [f"uid={uid}", f"gid={gid}", "fmask=0137", "dmask=0027"] if fstype in ("vfat", "exfat", "msdos") \
            else [f"uid={uid}", f"gid={gid}"]
    return ",".join(options)


def _run(cmd: list[str], what: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsbError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UsbError(f"{what}: {show(reason)}")
    return proc.stdout


def mount_flags(mount_point: Path) -> set[str] | None:
    """The per-mount flags of the mount at ``mount_point``, from mountinfo."""
    target = str(mount_point)
    flags = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5 and fields[4].encode().decode("unicode_escape") == target:
                flags = set(fields[5].split(","))  # the last mount on a point is the one seen
    return flags


def usb_import(settings: Settings, device_name: str) -> UsbResult:
    device = resolve_device(device_name)
    if os.geteuid() != 0:
        raise UsbError("usb-import mounts the device, which only root may do: systemd starts it as "
                       "airlock-usb@DEVICE.service when a stick is plugged in")
    try:
        home = os.stat(settings.home)
    except FileNotFoundError:
        raise UsbError(f"no appliance home at {settings.home}: run `airlock init` first") from None
    uid, gid = home.st_uid, home.st_gid
    if uid == 0:
        raise UsbError(f"the appliance home {settings.home} is owned by root, and usb-import never imports as root: "
                       f"give the home to the service user (`chown -R airlock:airlock {settings.home}`)")
    fstype = _run(["blkid", "-o", "value", "-s", "TYPE", str(device)], f"cannot tell the file system on {device}") \
        .strip()
    if not fstype:
        raise UsbError(f"{device} holds no file system that blkid knows")
    if fstype not in STICK_FILE_SYSTEMS:
        # each file system's driver parses the stick as root: only the ones sticks carry
        raise UsbError(f"{device} holds a {show(fstype)} file system, which Airlock does not mount: write the "
                       f"bundle to a stick formatted {', '.join(sorted(STICK_FILE_SYSTEMS))}")
    # under the unit's private /tmp (PrivateTmp=), in its own mount namespace
    mount_point = Path(tempfile.mkdtemp(prefix=f"airlock-usb-{device.name}-"))
    try:
        os.chown(mount_point, 0, gid)
        os.chmod(mount_point, 0o750)
        _run(["mount", "-t", fstype, "-o", mount_options(fstype, uid, gid), str(device), str(mount_point)],
             f"cannot mount {device} ({fstype})")
        try:
            return _handle_mounted(settings, device, mount_point, uid, gid)
        finally:
            _unmount(mount_point)
    finally:
        mount_point.rmdir()


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)  # a link with that name is not followed
    except FileNotFoundError:
        return False


def _check_flags(device: Path, mount_point: Path, wanted: tuple[str, ...]) -> None:
    flags = mount_flags(mount_point) or set()
    missing = [f for f in wanted if f not in flags]
    if missing:
        raise UsbError(f"{device} was mounted without {','.join(missing)}: not using it")


def _handle_mounted(settings: Settings, device: Path, mount_point: Path, uid: int, gid: int) -> UsbResult:
    _check_flags(device, mount_point, MOUNT_FLAGS)
    shown = ",".join(MOUNT_FLAGS)
    bundle, export_to = _is_folder(mount_point / BUNDLE), _is_folder(mount_point / EXPORT_FOLDER)
    if not bundle and not export_to:
        message = f"{device}: no {BUNDLE}/ or {EXPORT_FOLDER}/ folder at the root of the stick: ignored, unmounted"
        logger.info("%s", message)
        return UsbResult(str(device), "ignored", message, 0)
    said, failed, done = [], False, []
    if bundle:
        logger.info("%s mounted (%s): importing its %s/ folder", device, shown, BUNDLE)
        code, line = _as_owner(settings, uid, gid, ["import", str(mount_point), "--operator", f"usb:{device.name}"],
                               f"the import from {device}")
        said.append(line)
        failed |= code != 0
        done.append("imported" if code == 0 else "refused")
    if export_to:
        # written by the export, which flushes the file before it records it; unmounting flushes the rest
        _run(["mount", "-o", "remount,rw," + ",".join(MOUNT_FLAGS[1:]), str(mount_point)],
             f"cannot make {device} writable for the export")
        _check_flags(device, mount_point, ("rw", *MOUNT_FLAGS[1:]))
        shown += f"; rw for {EXPORT_FOLDER}/"
        logger.info("%s: writing an export into its %s/ folder", device, EXPORT_FOLDER)
        code, line = _as_owner(settings, uid, gid, ["export", str(mount_point / EXPORT_FOLDER), "--operator",
                                                    f"usb:{device.name}"], f"the export to {device}")
        said.append(line)
        failed |= code != 0
        done.append("exported" if code == 0 else "export failed")
    return UsbResult(str(device), ", ".join(done), f"{device} (mounted {shown}): {'; '.join(said)}", int(failed))


def _as_owner(settings: Settings, uid: int, gid: int, args: list[str], what: str) -> tuple[int, str]:
    """Run ``airlock ARGS`` as the home's owner: (exit status, its last line)."""
    cmd = [sys.executable, "-m", "appliance.usb", str(uid), str(gid), "--home", str(settings.home), *args]
    try:
        # in the home, which the owner may write: not wherever root happened to be
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=IMPORT_TIMEOUT, check=False,
                              cwd=settings.home)
    except subprocess.TimeoutExpired:
        raise UsbError(f"{what} took longer than {IMPORT_TIMEOUT} s and was stopped") from None
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    line = (out[-1] if out else f"{what} exited with status {proc.returncode}").removeprefix("airlock: error: ")
    return proc.returncode, line


def _unmount(mount_point: Path) -> None:
    for attempt in range(5):  # a reader that has just closed may hold it a moment longer
        try:
            _run(["umount", str(mount_point)], f"cannot unmount {mount_point}")
            return
        except UsbError:
            if attempt == 4:
                _run(["umount", "--lazy", str(mount_point)], f"cannot unmount {mount_point}")
                return
            time.sleep(0.2 * (attempt + 1))


# the import, as the home's owner -------------------------------------------------------

# imported before giving up root: Python and Airlock may sit where the
# home's owner may not read (they are root's to install); the standard
# library imports these lazily
_SKIP = {"server.wsgi", "appliance.demo"}  # build an app or a scratch folder on import
_LAZY = ("importlib.readers", "importlib.resources.readers", "getpass", "grp", "pwd", "difflib", "_strptime",
         "encodings.idna", "encodings.ascii", "encodings.latin_1")


def _preload() -> None:
    import importlib
    import pkgutil

    for package in ("signing", "server", "appliance"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if info.name not in _SKIP and not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    for name in _LAZY:
        importlib.import_module(name)


def _import_as_owner(argv: list[str]) -> int:
    """``python -m appliance.usb UID GID AIRLOCK-ARGS...``: become UID:GID
    (no other groups), then run ``airlock AIRLOCK-ARGS...``."""
    uid, gid, rest = int(argv[0]), int(argv[1]), argv[2:]
    _preload()
    from appliance.cli import main

    if (os.getuid(), os.getgid()) != (uid, gid):
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    return main(rest)


if __name__ == "__main__":
    sys.exit(_import_as_owner(sys.argv[1:]))
