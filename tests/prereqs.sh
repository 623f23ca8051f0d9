#!/bin/sh
# What the test suite needs from the machine, installed by `make test`.
#
# Checks every tool the suite runs (Debian package names beside them).  When
# something is missing: as root, installs it with apt, non-interactively,
# with daemons forbidden to start meanwhile (the tests start their own, on
# loopback or in private network namespaces); otherwise prints one line
# naming the packages and the command to run, and exits 1.  A missing tool
# therefore stops `make test` before pytest: no test is skipped for it.
#
# Usage: sh tests/prereqs.sh  (PREREQS_NO_INSTALL=1: only report, even as root)
set -eu

# daemons live in sbin, which a non-root PATH may lack
PATH="$PATH:/usr/sbin:/sbin"

missing=""
need() {  # need PACKAGE TOOL: PACKAGE provides the command TOOL
    command -v "$2" >/dev/null 2>&1 || case " $missing " in
        *" $1 "*) ;;
        *) missing="${missing:+$missing }$1" ;;
    esac
}

python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="${missing:+$missing }python3-venv"
# maintenance windows are plant time in IANA zones (zoneinfo reads the tz database)
[ -e /usr/share/zoneinfo/Europe/Berlin ] || missing="${missing:+$missing }tzdata"
need nodejs node                       # tuf-js, the second TUF client
need npm npm                           # installs tuf-js into .cache/
need nginx nginx                       # the static-serving test
need strace strace                     # crash tests: kills at every syscall
need tar tar                           # bundles as archives
need iproute2 ip                       # mDNS tests: loopback in a namespace
need util-linux unshare                # private network namespaces; runuser
need util-linux runuser                # tests that run as an unprivileged user
need passwd useradd                    # install.sh creates the airlock user (in a private mount namespace)
need git git                           # the upgrade test builds the previous release from git archive
[ -x /usr/bin/python3 ] || missing="${missing:+$missing }python3"  # install.sh uses Debian's python3
need util-linux losetup                # USB tests: file-system images on loop devices
need e2fsprogs mkfs.ext4               # USB tests: the images
need util-linux blkid                  # usb-import tells the file system
need dbus dbus-daemon                  # avahi's private bus
need avahi-daemon avahi-daemon         # an independent mDNS peer
need avahi-utils avahi-browse
need avahi-utils avahi-publish
need chromium chromium                 # the label form in a real browser
need systemd systemd-analyze           # checks the systemd unit offline
need faketime faketime                 # trusted-time tests: a wrong clock for one process
# PostgreSQL: the database-facing tests run on it too (a private cluster, tests/support/postgres.py);
# Debian keeps initdb and pg_ctl off PATH, in /usr/lib/postgresql/N/bin
postgresql_found=""
for initdb in /usr/lib/postgresql/*/bin/initdb; do [ -x "$initdb" ] && postgresql_found=1; done
[ -n "$postgresql_found" ] || need postgresql initdb

[ -z "$missing" ] && exit 0

# shellcheck disable=SC2086 # the package list is meant to split
command="apt-get update && apt-get install -y --no-install-recommends $missing"
if [ "$(id -u)" != 0 ] || [ -n "${PREREQS_NO_INSTALL:-}" ]; then
    echo "make test: missing packages: $missing; install them as root: $command" >&2
    exit 1
fi

echo "make test: installing $missing" >&2
export DEBIAN_FRONTEND=noninteractive
# avahi-daemon, nginx and dbus start their daemons on install unless
# policy-rc.d says no (exit 101: action forbidden); remove ours afterwards.
policy=${PREREQS_POLICY_RC_D:-/usr/sbin/policy-rc.d}  # another path only for its test
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    made_policy=1
fi
trap '[ -z "$made_policy" ] || rm -f "$policy"' EXIT
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
