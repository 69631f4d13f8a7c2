#!/usr/bin/env bash
# Deploy a new suiftly binary (docs/OPERATIONS.md, "Upgrade"):
#   install it as /opt/suiftly/releases/<sha256-prefix>/suiftly, migrate the database with
#   it, point /opt/suiftly/current at it (the old target becomes /opt/suiftly/previous),
#   restart this host's roles in order (ingest — its socket stays open —, manager, api),
#   health-check each; when a health check fails, point current back at the previous release,
#   restart again and exit 1. Deploying the release that is already current does nothing.
#
#   deploy/deploy.sh [--root DIR] [--dry-run] BINARY
#
# Migrations are forward-only: the rolled-back binary runs against the new schema, so a
# release's migrations must stay compatible with the previous release (docs/OPERATIONS.md).
source "$(dirname "$0")/lib.sh"

parse_common "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
[ $# = 1 ] || die "usage: deploy.sh [--root DIR] [--dry-run] BINARY"
BIN=$1
[ -x "$BIN" ] || die "$BIN is not an executable file"
conf=$(at /etc/suiftly/deploy.conf)
[ -r "$conf" ] || die "$conf missing: run deploy/provision.sh first"
HEALTH_TIMEOUT_SECS=60
# shellcheck disable=SC1090
. "$conf"
mapfile -t ROLES <"$(at /etc/suiftly/roles)"

version=$(sha256sum "$BIN" | cut -c1-16)
rel=/opt/suiftly/releases/$version
cur_link=$(at /opt/suiftly/current)
current=$(readlink "$cur_link" 2>/dev/null || true)
if [ "$current" = "releases/$version" ]; then
    ok "release $version is already current"
    finish
    exit 0
fi

ensure_dir "$rel" 0755 root:root
ensure_file "$BIN" "$rel/suiftly" 0755 root:root
# Documentation next to the binary (the units' Documentation= points here).
if [ -f "$DEPLOY_DIR/../docs/OPERATIONS.md" ]; then
    ensure_file "$DEPLOY_DIR/../docs/OPERATIONS.md" "$rel/docs/OPERATIONS.md" 0644 root:root
fi

suiftly() { # the given release's binary with this host's config and secrets
    (
        load_env
        export SUIFTLY_CONFIG="$(at /etc/suiftly/suiftly.toml)" SUIFTLY_DATA_DIR="$(at /var/lib/suiftly)"
        "$(at "$1")/suiftly" "${@:2}"
    )
}

change "migrate the database with release $version"
if ! ((DRY)); then
    suiftly "$rel" migrate || die "migration failed; nothing was switched or restarted"
fi

switch_to() { # relative target (releases/<v>)
    act ln -sfn "$1" "$cur_link.new"
    act mv -T "$cur_link.new" "$cur_link"
}
unit_of() { printf 'suiftly-%s.service' "$1"; }
health_var() { local v="HEALTH_${1^^}"; printf '%s' "${!v}"; }

restart_all() {
    for role in ingest manager api; do
        printf '%s\n' "${ROLES[@]}" | grep -qx "$role" || continue
        act "$SYSTEMCTL" restart "$(unit_of "$role")"
    done
}
healthy() { # every role's health URL answers 2xx within the timeout
    local role url t0
    for role in "${ROLES[@]}"; do
        url=$(health_var "$role")
        t0=$SECONDS
        until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
            if ((SECONDS - t0 >= HEALTH_TIMEOUT_SECS)); then
                say "health  $role: $url did not answer 2xx within ${HEALTH_TIMEOUT_SECS}s"
                return 1
            fi
            sleep 0.5
        done
        say "health  $role: $url ok"
    done
}

if [ -n "$current" ]; then
    change "previous -> $current"
    act ln -sfn "$current" "$(at /opt/suiftly/previous)"
fi
change "current -> releases/$version; restart ${ROLES[*]}"
switch_to "releases/$version"
restart_all
if ((DRY)); then
    finish
    exit 0
fi
if healthy; then
    finish
    exit 0
fi
if [ -z "$current" ]; then
    die "release $version is unhealthy and there is no previous release to roll back to"
fi
say "rollback: release $version failed its health check; back to $current"
switch_to "$current"
restart_all
if healthy; then
    die "rolled back to $current (release $version failed its health check)"
fi
die "rolled back to $current, which is unhealthy too: see journalctl -u 'suiftly-*'"
