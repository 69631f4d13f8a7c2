#!/usr/bin/env bash
# Back up the database (and, with --spool, the spool of a stopped ingestor) into
# /var/backups/suiftly/<UTC time>-<hash>/ (docs/OPERATIONS.md, "Back up and restore").
#
#   deploy/backup.sh [--root DIR] [--dry-run] [--business-only] [--spool]
#
# The dump is plain SQL (pg_dump --no-owner --no-privileges, gzip -n), so identical contents
# give identical files: when nothing changed since the newest backup, the run says so and
# writes nothing. Default: everything (schema, migration history, business tables —
# customers, services, keys, escrow/billing ledger, vault versions — usage and aggregates,
# raw logs). --business-only leaves out the rows of the bulk ingest tables
# (haproxy_raw_logs, haproxy_rejected_lines: 7-day retention, large); a copy restored from
# such a backup audits clean only for windows it has no raw rows for.
source "$(dirname "$0")/lib.sh"

BUSINESS_ONLY=0
SPOOL=0
parse_common "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
    case "$1" in
    --business-only) BUSINESS_ONLY=1; shift ;;
    --spool) SPOOL=1; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
    esac
done
load_env
[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set in /etc/suiftly/suiftly.env"
dest_root=$(at /var/backups/suiftly)
[ -d "$dest_root" ] || die "$dest_root missing: run deploy/provision.sh first"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
args=(--no-owner --no-privileges --quote-all-identifiers)
if ((BUSINESS_ONLY)); then
    args+=(--exclude-table-data='haproxy_raw_logs*' --exclude-table-data='haproxy_rejected_lines*')
fi
pg_dump "${args[@]}" -d "$DATABASE_URL" -f "$tmp/database.sql" || die "pg_dump failed"
gzip -n "$tmp/database.sql"
if ((SPOOL)); then
    if "$SYSTEMCTL" is-active --quiet suiftly-ingest.service 2>/dev/null; then
        die "the ingestor is running: stop it (systemctl stop suiftly-ingest.service; the socket keeps queueing) before backing up its spool"
    fi
    spool=$(at /var/lib/suiftly/spool)
    [ -d "$spool" ] || die "$spool missing"
    # Sorted names, fixed owner and time: the same spool gives the same archive.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$spool" -cf - . | gzip -n >"$tmp/spool.tar.gz"
fi
(cd "$tmp" && sha256sum -- * >SHA256SUMS)
# What the backup holds, for "unchanged since the newest backup": the dump without pg_dump's
# per-run random \restrict key lines, and the spool archive.
{
    gunzip -c "$tmp/database.sql.gz" | grep -v '^\\\(un\)\?restrict ' | sha256sum
    [ -f "$tmp/spool.tar.gz" ] && sha256sum <"$tmp/spool.tar.gz"
} >"$tmp/CONTENT"
hash=$(sha256sum "$tmp/CONTENT" | cut -c1-12)

newest=$(find "$dest_root" -mindepth 1 -maxdepth 1 -type d | sort | tail -n 1)
if [ -n "$newest" ] && cmp -s "$newest/CONTENT" "$tmp/CONTENT"; then
    ok "backup ${newest#"${ROOT%/}"} holds exactly this content"
    finish
    exit 0
fi
name=$(date -u +%Y%m%dT%H%M%SZ)-$hash
change "write backup /var/backups/suiftly/$name ($(cd "$tmp" && echo *))"
if ! ((DRY)); then
    mkdir -m 0700 "$dest_root/$name.partial"
    cp "$tmp"/* "$dest_root/$name.partial/"
    mv "$dest_root/$name.partial" "$dest_root/$name"
fi
finish
