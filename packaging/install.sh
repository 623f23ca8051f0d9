#!/bin/sh
# Airlock offline installer: run as root from the folder `make dist` built
# (dist/airlock-VERSION/), on a Debian 12 box with no network.
#
#   sh install.sh [--backup-dir DIR] [--backup-passphrase-file FILE] [--no-backup]
#
# First install: a venv under /opt/airlock-releases/, /opt/airlock linked to
# it, the `airlock` system user and its home /var/lib/airlock (0750), links
# in /usr/local/bin, the systemd units, the udev rule, the nginx snippet and
# the docs, then `airlock init` (no administrator yet: see docs/install.md).
# Over an existing install (an upgrade): the same, and before the switch the
# running units are stopped and the old release writes a backup (`airlock
# backup`, passphrase from /etc/airlock/backup-passphrase or the file given);
# after it `airlock init` migrates the database (it refuses a home newer than
# this release), and the units that ran are started again. A refused step
# puts the previous release back and says so. Never uses the network: pip
# runs with --no-index on wheels/ only.
#
# Environment (defaults): AIRLOCK_HOME (/var/lib/airlock; the setting every
# airlock command takes), PYTHON (/usr/bin/python3). No other AIRLOCK_*
# variable: airlock refuses those that name no setting.
set -eu
umask 022

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

HOME_DIR=${AIRLOCK_HOME:-/var/lib/airlock}
USER_NAME=airlock
OPT=/opt
BIN=/usr/local/bin
BACKUP_DIR=/var/backups/airlock
PASSPHRASE=/etc/airlock/backup-passphrase
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
BACKUP=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --backup-dir) [ $# -ge 2 ] || die "--backup-dir needs a folder"; BACKUP_DIR=$2; shift 2 ;;
        --backup-passphrase-file) [ $# -ge 2 ] || die "--backup-passphrase-file needs a file"; PASSPHRASE=$2; shift 2 ;;
        --no-backup) BACKUP=no; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see: sh install.sh --help)" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo sh install.sh): it creates a user and installs units"
DIST=$(cd "$(dirname "$0")" && pwd)
cd "$DIST"
[ -f BUILD-INFO ] && [ -d wheels ] || die "$DIST is not an Airlock dist folder (no BUILD-INFO or wheels/): run install.sh from the folder make dist built"
VERSION=$(sed -n 's/^version=//p' BUILD-INFO)
BUILD=$(sed -n 's/^build=//p' BUILD-INFO)
sha256sum --check --quiet --strict SHA256SUMS >/dev/null 2>&1 ||
    die "the dist's files do not match SHA256SUMS (damaged or changed on the way): copy the folder or the .tar.gz again"

"$PYTHON" - <<'EOF' || die "$PYTHON is not Python 3.11 with SQLite 3.35 or newer (install Debian 12's python3, or set PYTHON=)"
import sqlite3, sys
sys.exit(0 if sys.version_info[:2] == (3, 11) and sqlite3.sqlite_version_info >= (3, 35) else 1)
EOF

CURRENT="$OPT/airlock"
RELEASES="$OPT/airlock-releases"
SYSTEMD=no
[ -d /run/systemd/system ] && SYSTEMD=yes
# a home `airlock init` made: its SQLite file, or (database_url on PostgreSQL) its appliance id;
# an upgrade when a release runs it here, else a box joining a shared home (docs/scale-out.md)
HOME_MADE=no
if [ -e "$HOME_DIR/airlock.db" ] || [ -e "$HOME_DIR/appliance-id" ]; then HOME_MADE=yes; fi
UPGRADE=no
if [ -e "$CURRENT/bin/airlock" ] && [ "$HOME_MADE" = yes ]; then UPGRADE=yes; fi

# --- the new release, beside the running one --------------------------------
mkdir -p "$RELEASES"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RELEASE="$RELEASES/$VERSION-$BUILD-$STAMP"
[ -e "$RELEASE" ] && RELEASE="$RELEASE-$$"
say "installing Airlock $VERSION (build $BUILD) into $RELEASE"
"$PYTHON" -m venv --without-pip "$RELEASE" || die "$PYTHON -m venv failed (Debian: the python3.11-venv package)"
PIP_WHEEL=$(ls wheels/pip-*.whl | tail -n 1)
# no index, no configuration, no cache: the wheels in this folder and nothing else
if ! env -i PATH=/usr/bin:/bin PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$RELEASE/bin/python" "$PIP_WHEEL/pip" install --quiet --no-index \
        --find-links "$DIST/wheels" --no-cache-dir --no-warn-script-location "airlock==$VERSION"; then
    rm -rf "$RELEASE"
    die "pip could not install from $DIST/wheels (nothing was changed): build the dist again with make dist"
fi
"$RELEASE/bin/airlock" --version >/dev/null || { rm -rf "$RELEASE"; die "the new release does not run (nothing was changed)"; }

# --- the service user and its home ------------------------------------------
if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir "$HOME_DIR" --no-create-home --shell /usr/sbin/nologin \
        --comment "Airlock update appliance" "$USER_NAME"
    say "created system user $USER_NAME"
fi
if [ ! -d "$HOME_DIR" ]; then
    install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$HOME_DIR"
fi
OWNER=$(stat -c %U "$HOME_DIR")
[ "$OWNER" != root ] || die "$HOME_DIR is owned by root; Airlock runs as $USER_NAME: chown -R $USER_NAME:$USER_NAME $HOME_DIR"
# as the service runs it (systemd/airlock.service: UMask=0027)
as_owner() { (cd / && umask 027 && runuser -u "$OWNER" -- "$@"); }

# --- upgrade: stop, back up with the old release -----------------------------
STOPPED=""
if [ "$SYSTEMD" = yes ]; then
    for unit in systemd/*.service; do
        name=$(basename "$unit")
        case "$name" in *@.service) continue ;; esac
        if systemctl is-active --quiet "$name"; then STOPPED="$STOPPED $name"; fi
    done
fi
RESTARTED=no
restart_stopped() {
    RESTARTED=yes
    for name in $STOPPED; do systemctl start "$name" || say "could not start $name: journalctl -u $name"; done
}
# whatever stops this script later, the units it stopped run again
trap '[ "$RESTARTED" = yes ] || restart_stopped' EXIT
if [ "$HOME_MADE" = yes ]; then
    # an older release must not run on a home a newer one migrated: refuse before anything changes.
    # The new release reads the home's settings (airlock.toml: its SQLite file, or database_url),
    # read-only; a release from before PostgreSQL reads the SQLite file itself.
    NEW_SCHEMA=$(ls "$RELEASE"/lib/python3*/site-packages/server/migrations/ | sed -n 's/^\([0-9]\{4\}\)_.*\.sql$/\1/p' | sort | tail -n 1)
    DB_STATE=$(as_owner "$RELEASE/bin/python" -c 'import sys
from pathlib import Path
try:
    from server.db import applied_migrations, open_settings_database
    from server.settings import load_settings
except ImportError:
    import sqlite3
    con = sqlite3.connect("file:" + sys.argv[1] + "/airlock.db?mode=ro", uri=True)
    print("sqlite", con.execute("SELECT coalesce(max(version), 0) FROM schema_migration").fetchone()[0])
    sys.exit(0)
settings = load_settings(Path(sys.argv[1]))
print(settings.database_engine, max(applied_migrations(open_settings_database(settings, read_only=True)), default=0))' "$HOME_DIR") ||
        { rm -rf "$RELEASE"; die "cannot read the schema version of the database of $HOME_DIR (above): check database_url in $HOME_DIR/airlock.toml (install.sh reads no unit's environment) and that PostgreSQL answers from here; nothing was changed"; }
    read -r ENGINE HOME_SCHEMA <<DBSTATE
$DB_STATE
DBSTATE
    case "$HOME_SCHEMA" in
        ''|*[!0-9]*) rm -rf "$RELEASE"; die "cannot read the schema version of the database of $HOME_DIR (it said: $DB_STATE); nothing was changed" ;;
    esac
    if [ "$HOME_SCHEMA" -gt "${NEW_SCHEMA:-0}" ]; then
        rm -rf "$RELEASE"
        die "the database in $HOME_DIR has schema $HOME_SCHEMA, newer than this release's (${NEW_SCHEMA:-none}): this dist is older than the installed Airlock; nothing was changed"
    fi
fi
if [ "$UPGRADE" = yes ]; then
    if [ "$ENGINE" = postgresql ] && [ "$BACKUP" = yes ]; then
        rm -rf "$RELEASE"
        die "this appliance's database is PostgreSQL (database_url): airlock backup covers a home with its SQLite file only. Back the database up with pg_dump and the home with the shared storage's snapshots (docs/scale-out.md, Backups; on the first app server of several, stop airlock serve on the others first), then run install.sh again with --no-backup; nothing was changed"
    fi
    if [ "$BACKUP" = yes ] && [ ! -r "$PASSPHRASE" ]; then
        rm -rf "$RELEASE"
        die "an upgrade takes a backup first and $PASSPHRASE does not exist: put the backup passphrase in it (mode 0600, see docs/backup.md) or give --backup-passphrase-file FILE; --no-backup skips it (nothing was changed)"
    fi
    OLD_VERSION=$("$CURRENT/bin/airlock" --version 2>/dev/null || echo "an unknown version")
    say "upgrading from $OLD_VERSION; home $HOME_DIR is kept"
    for name in $STOPPED; do say "stopping $name"; systemctl stop "$name"; done
    if [ "$BACKUP" = yes ]; then
        [ -d "$BACKUP_DIR" ] || install -d -o "$OWNER" -g "$OWNER" -m 0750 "$BACKUP_DIR"
        # the passphrase file is root's: hand the service user a private copy
        WORK=$(mktemp -d)
        chown "$OWNER" "$WORK"; chmod 0700 "$WORK"
        install -o "$OWNER" -m 0600 "$PASSPHRASE" "$WORK/passphrase"
        if ! as_owner "$CURRENT/bin/airlock" --home "$HOME_DIR" backup "$BACKUP_DIR" --passphrase-file "$WORK/passphrase"; then
            rm -rf "$WORK" "$RELEASE"; restart_stopped
            die "the backup before the upgrade failed (nothing was changed): fix what it says, or --no-backup"
        fi
        rm -rf "$WORK"
    else
        say "--no-backup: upgrading without a backup"
    fi
fi

# --- switch /opt/airlock to the new release ----------------------------------
PREVIOUS=""
if [ -L "$CURRENT" ]; then
    PREVIOUS=$(readlink "$CURRENT")
elif [ -d "$CURRENT" ]; then  # a venv installed by hand: kept as a release
    PREVIOUS="$RELEASES/manual-$STAMP"
    mv "$CURRENT" "$PREVIOUS"
fi
switch_to() { ln -sfn "$1" "$CURRENT.new" && mv -T "$CURRENT.new" "$CURRENT"; }
switch_to "$RELEASE"
for tool in airlock airlock-sign airlock-agent; do
    ln -sfn "$CURRENT/bin/$tool" "$BIN/$tool"
done

# --- the home: create or migrate ---------------------------------------------
if ! as_owner "$CURRENT/bin/airlock" --home "$HOME_DIR" init; then
    if [ -n "$PREVIOUS" ]; then
        switch_to "$PREVIOUS"
        say "put the previous release $PREVIOUS back"
    else
        rm -f "$CURRENT"
    fi
    rm -rf "$RELEASE"; restart_stopped
    die "airlock init refused the home $HOME_DIR (above): if it migrated part of the way, restore the backup taken before (docs/install.md, Upgrades)"
fi

# --- files for systemd, udev, nginx; the docs ----------------------------------
install -d -m 0755 /etc/airlock /etc/systemd/system /etc/udev/rules.d /usr/share/doc/airlock
for unit in systemd/*; do install -m 0644 "$unit" /etc/systemd/system/; done
install -m 0644 udev/*.rules /etc/udev/rules.d/
install -m 0644 doc/*.md /usr/share/doc/airlock/
# nginx's configuration is the operator's to edit: never overwritten
for conf in nginx/*.conf; do
    [ -e "$conf" ] || continue
    name=$(basename "$conf")
    install -m 0644 "$conf" "/usr/share/doc/airlock/$name"
    if [ ! -e "/etc/airlock/$name" ]; then
        install -m 0644 "$conf" "/etc/airlock/$name"
    elif ! cmp -s "$conf" "/etc/airlock/$name"; then
        install -m 0644 "$conf" "/etc/airlock/$name.dist"
        say "/etc/airlock/$name differs from this release's: the new one is /etc/airlock/$name.dist (compare, merge, reload nginx)"
    fi
done

if [ "$UPGRADE" = no ] && [ -e "$HOME_DIR/airlock.db" ]; then
    chmod 0600 "$HOME_DIR/airlock.db"  # nginx's worker joins the group for public/; the database stays private
fi

# --- systemd and udev ----------------------------------------------------------
if [ "$SYSTEMD" = yes ]; then
    systemctl daemon-reload
    if command -v udevadm >/dev/null 2>&1; then udevadm control --reload || say "udevadm control --reload failed"; fi
    restart_stopped
    for name in $STOPPED; do say "started $name again"; done
else
    say "systemd is not running here (a container or chroot?): skipped systemctl daemon-reload, udevadm control --reload and restarting units; run them when the box boots with systemd"
fi

# --- keep the current and the previous release --------------------------------
for old in "$RELEASES"/*; do
    [ -d "$old" ] || continue
    case "$old" in "$RELEASE"|"$PREVIOUS") continue ;; esac
    rm -rf "$old"
done

say "Airlock $VERSION is installed: $CURRENT -> $RELEASE; commands in $BIN; home $HOME_DIR (owner $OWNER)"
if [ "$UPGRADE" = no ]; then
    say "next: add an administrator, pin a repository, import, enable the service (docs/install.md, /usr/share/doc/airlock/install.md)"
fi
