#!/usr/bin/env bash
# Restore a backup written by deploy/backup.sh (docs/OPERATIONS.md, "Back up and restore").
#
#   deploy/restore.sh [--root DIR] [--dry-run] --from BACKUP_DIR [--database CONNINFO] [--spool]
#
# --database: the database to restore into (default: DATABASE_URL of the environment file).
# It must be empty (a fresh `CREATE DATABASE`), or already restored from this very backup:
# then nothing is done (the database's comment records which backup it holds). --spool puts
# the backed-up spool back under /var/lib/suiftly/spool (which must be absent or empty, or
# hold exactly that spool); start the ingestor afterwards and it stores what the spool holds.
source "$(dirname "$0")/lib.sh"

FROM=
DB=
SPOOL=0
parse_common "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
    case "$1" in
    --from) FROM=$2; shift 2 ;;
    --database) DB=$2; shift 2 ;;
    --spool) SPOOL=1; shift ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
    esac
done
[ -n "$FROM" ] || die "--from BACKUP_DIR is required"
[ -f "$FROM/SHA256SUMS" ] || die "$FROM is not a backup (no SHA256SUMS)"
(cd "$FROM" && sha256sum --quiet -c SHA256SUMS) || die "$FROM is damaged: checksums differ"
if [ -z "$DB" ]; then
    load_env
    DB=${DATABASE_URL:-}
fi
[ -n "$DB" ] || die "no --database and no DATABASE_URL"
marker="suiftly backup $(sha256sum "$FROM/SHA256SUMS" | cut -c1-12)"

q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
comment=$(q -c "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()")
tables=$(q -c "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
if [ "$comment" = "$marker" ]; then
    ok "database already holds $marker"
elif [ "$tables" != 0 ]; then
    die "the target database has $tables tables and was not restored from this backup: restore into a fresh database"
else
    change "restore the database from $FROM ($marker)"
    if ! ((DRY)); then
        gunzip -c "$FROM/database.sql.gz" | q --single-transaction -f - >/dev/null || die "restore failed (rolled back)"
        q -c "DO \$\$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), '$marker'); END \$\$"
    fi
fi

if ((SPOOL)); then
    [ -f "$FROM/spool.tar.gz" ] || die "$FROM holds no spool (backup.sh --spool)"
    spool=$(at /var/lib/suiftly/spool)
    listing() { tar -tzvf "$FROM/spool.tar.gz" | awk '{ print $3, $6 }' | sort; }
    if [ -d "$spool" ] && [ -n "$(ls -A "$spool")" ]; then
        have=$(cd "$spool" && find . -type f -printf '%s %p\n' | sort)
        want=$(listing | awk '$2 !~ /\/$/' | sort)
        if [ "$have" = "$want" ]; then ok "spool already holds the backed-up segments"; else
            die "$spool is not empty and differs from the backup: move it away first"
        fi
    else
        o=$(ids suiftly:suiftly)
        change "restore the spool into /var/lib/suiftly/spool"
        act install -d -m 0750 -o "${o%:*}" -g "${o#*:}" "$spool"
        act tar -xzf "$FROM/spool.tar.gz" -C "$spool" --no-same-owner
        act chown -R "$o" "$spool"
    fi
fi
finish
