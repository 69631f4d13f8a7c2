# Shared by deploy/*.sh (sourced). Every step checks before it acts and says what it did:
# "ok" (already so) or "change" ("would change" under --dry-run). A run that changes
# nothing ends with "nothing to do", so running a script twice shows the second run is a
# no-op. Paths are under --root (default /) so the tests run the scripts in a scratch tree.
set -euo pipefail

ROOT=/
DRY=0
CHANGES=0
# Replaced in tests (no systemd as PID 1 there); `systemctl` on a host.
SYSTEMCTL=${SUIFTLY_SYSTEMCTL:-systemctl}
UNITS=(suiftly-ingest.socket suiftly-ingest.service suiftly-manager.service suiftly-api.service)
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf '%s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}
ok() { say "ok      $*"; }
change() {
    CHANGES=$((CHANGES + 1))
    if ((DRY)); then say "would   $*"; else say "change  $*"; fi
}
# Runs a command unless --dry-run.
act() { if ((DRY)); then :; else "$@"; fi; }
# A path under the root.
at() { printf '%s%s' "${ROOT%/}" "$1"; }

# Common options; sets ARGS to what is left.
parse_common() {
    ARGS=()
    while (($#)); do
        case "$1" in
        --root) ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --dry-run) DRY=1; shift ;;
        *) ARGS+=("$1"); shift ;;
        esac
    done
    [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
}

# uid/gid of a name from the root's own /etc/passwd, /etc/group (the host's NSS does not
# know a scratch root's users).
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(at /etc/passwd)"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$(at /etc/group)"; }
ids() { # owner[:group] -> uid:gid
    local u=${1%%:*} g=${1#*:} uid gid
    [ "$g" = "$1" ] && g=$u
    uid=$([ "$u" = root ] && echo 0 || uid_of "$u")
    gid=$([ "$g" = root ] && echo 0 || gid_of "$g")
    [ -n "$uid" ] && [ -n "$gid" ] || die "unknown user or group $1 under $ROOT"
    printf '%s:%s' "$uid" "$gid"
}

# 0750 -> 750 (as stat prints it).
norm() { printf '%o' $((8#$1)); }

# ensure_dir PATH MODE OWNER[:GROUP]
ensure_dir() {
    local p m o
    p=$(at "$1") m=$2 o=$(ids "$3")
    if [ ! -d "$p" ]; then
        change "create directory $1 ($m $3)"
        act install -d -m "$m" -o "${o%:*}" -g "${o#*:}" "$p"
        return
    fi
    if [ "$(stat -c '%a %u:%g' "$p")" != "$(norm "$m") $o" ]; then
        change "fix directory $1 to $m $3"
        act chmod "$m" "$p"
        act chown "$o" "$p"
    else
        ok "directory $1"
    fi
}

# ensure_file SRC DEST MODE OWNER[:GROUP]: DEST has SRC's content, mode and owner.
ensure_file() {
    local src=$1 p o
    p=$(at "$2") o=$(ids "$4")
    if [ -f "$p" ] && cmp -s "$src" "$p"; then
        if [ "$(stat -c '%a %u:%g' "$p")" != "$(norm "$3") $o" ]; then
            change "fix mode/owner of $2 to $3 $4"
            act chmod "$3" "$p"
            act chown "$o" "$p"
        else
            ok "file $2"
        fi
        return
    fi
    change "$([ -f "$p" ] && echo update || echo install) file $2"
    act install -D -m "$3" -o "${o%:*}" -g "${o#*:}" "$src" "$p"
}

# The summary line every script ends with.
finish() {
    if ((CHANGES == 0)); then
        say "nothing to do: everything was already in place"
    elif ((DRY)); then
        say "dry run: $CHANGES change(s) would be made; nothing was changed"
    else
        say "done: $CHANGES change(s)"
    fi
}

# Loads the environment file (DATABASE_URL, secrets) into this shell, exported.
load_env() {
    local f
    f=$(at /etc/suiftly/suiftly.env)
    [ -r "$f" ] || die "$f missing: run deploy/provision.sh first"
    set -a
    # shellcheck disable=SC1090
    . "$f"
    set +a
}
