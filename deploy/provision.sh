#!/usr/bin/env bash
# Provision a host for Suiftly (docs/OPERATIONS.md, "Install"). Idempotent: a second run
# changes nothing and says so. Never overwrites the config or the environment file once
# written (edit them in place).
#
#   deploy/provision.sh [--root DIR] [--dry-run] [--roles ingest,manager,api]
#                       [--pg-admin CONNINFO] [--database-name suiftly] [--server-id N]
#                       [--dashboard-origin URL]
#
# --pg-admin: a libpq keyword/value connection string of a PostgreSQL superuser (e.g.
#   "host=/run/postgresql user=postgres"); creates the `suiftly` role and its database (and
#   the timescaledb extension where the server preloads it). DATABASE_URL in the environment file is
#   this string with user, password and dbname replaced. Without it the database step is
#   skipped and DATABASE_URL must be set by hand.
source "$(dirname "$0")/lib.sh"

ROLES=ingest,manager,api
PG_ADMIN=
DBNAME=suiftly
SERVER_ID=17
ORIGIN=https://app.suiftly.io
parse_common "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
while (($#)); do
    case "$1" in
    --roles) ROLES=$2; shift 2 ;;
    --pg-admin) PG_ADMIN=$2; shift 2 ;;
    --database-name) DBNAME=$2; shift 2 ;;
    --server-id) SERVER_ID=$2; shift 2 ;;
    --dashboard-origin) ORIGIN=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
    esac
done
IFS=, read -r -a ROLE_LIST <<<"$ROLES"
for r in "${ROLE_LIST[@]}"; do
    case "$r" in ingest | manager | api) ;; *) die "unknown role $r (ingest, manager, api)" ;; esac
done
prefix=()
[ "$ROOT" = / ] || prefix=(--prefix "$ROOT")

# 1. The service user.
if [ -n "$(gid_of suiftly)" ]; then ok "group suiftly"; else
    change "create system group suiftly"
    act groupadd --system "${prefix[@]}" suiftly
fi
if [ -n "$(uid_of suiftly)" ]; then ok "user suiftly"; else
    change "create system user suiftly (no login, home /var/lib/suiftly)"
    act useradd --system "${prefix[@]}" --gid suiftly --home-dir /var/lib/suiftly \
        --no-create-home --shell /usr/sbin/nologin suiftly
fi
if ((DRY)) && [ -z "$(uid_of suiftly)" ]; then
    say "dry run: the remaining steps need the suiftly user; they would all run"
    CHANGES=$((CHANGES + 1))
    finish
    exit 0
fi

# 2. Directories. The state directory is also systemd's StateDirectory= (same mode).
ensure_dir /etc/suiftly 0750 root:suiftly
ensure_dir /var/lib/suiftly 0750 suiftly:suiftly
ensure_dir /opt/suiftly 0755 root:root
ensure_dir /opt/suiftly/releases 0755 root:root
ensure_dir /var/backups/suiftly 0700 root:root
ensure_dir /etc/systemd/system 0755 root:root

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 3. The config file, from the template, once.
if [ -f "$(at /etc/suiftly/suiftly.toml)" ]; then
    ok "config /etc/suiftly/suiftly.toml (kept as it is: edit it in place)"
else
    sed -e "s|@SERVER_ID@|$SERVER_ID|" -e "s|@DASHBOARD_ORIGIN@|$ORIGIN|" \
        "$DEPLOY_DIR/suiftly.toml.template" >"$tmp/suiftly.toml"
    ensure_file "$tmp/suiftly.toml" /etc/suiftly/suiftly.toml 0640 root:suiftly
fi

# 4. The database: role, database, timescaledb where the server preloads it.
psql_admin() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$PG_ADMIN" "$@"; }
psql_db() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$PG_ADMIN dbname=$DBNAME" "$@"; }
if [ -n "$PG_ADMIN" ]; then
    if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'suiftly'")" = 1 ]; then
        ok "postgresql role suiftly"
    else
        change "create postgresql role suiftly"
        act psql_admin -c "CREATE ROLE suiftly LOGIN"
    fi
    # Migration V1 reads shared_preload_libraries (is timescaledb preloaded?), which a plain
    # role may not: pg_read_all_settings lets it.
    if [ "$(psql_admin -c "SELECT 1 WHERE pg_has_role('suiftly', 'pg_read_all_settings', 'MEMBER')")" = 1 ]; then
        ok "role suiftly can read server settings (pg_read_all_settings)"
    else
        change "grant pg_read_all_settings to suiftly (migrations read shared_preload_libraries)"
        act psql_admin -c "GRANT pg_read_all_settings TO suiftly"
    fi
    db_exists=$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")
    if [ "$db_exists" = 1 ]; then
        owner=$(psql_admin -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$DBNAME'")
        [ "$owner" = suiftly ] || die "database $DBNAME exists but belongs to $owner, not suiftly"
        ok "postgresql database $DBNAME"
    else
        change "create postgresql database $DBNAME (owner suiftly)"
        act psql_admin -c "CREATE DATABASE \"$DBNAME\" OWNER suiftly"
    fi
    preload=$(psql_admin -c "SHOW shared_preload_libraries")
    if [[ "$preload" != *timescaledb* ]]; then
        ok "timescaledb not preloaded by the server: plain partitioned tables"
    elif [ "$db_exists" != 1 ] && ((DRY)); then
        change "create extension timescaledb in $DBNAME"
    elif [ "$(psql_db -c "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")" = 1 ]; then
        ok "timescaledb extension"
    else
        change "create extension timescaledb in database $DBNAME"
        act psql_db -c "CREATE EXTENSION timescaledb"
    fi
else
    ok "database step skipped (no --pg-admin): set DATABASE_URL in /etc/suiftly/suiftly.env"
fi

# 5. The environment file with fresh secrets, once (mode 0640 root:suiftly).
hex32() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
if [ -f "$(at /etc/suiftly/suiftly.env)" ]; then
    ok "environment file /etc/suiftly/suiftly.env (kept: secrets are never regenerated)"
else
    pw=$(hex32)
    {
        echo "# Secrets for the suiftly units (docs/OPERATIONS.md, \"Environment\"). Mode 0640 root:suiftly."
        echo "# Written once by deploy/provision.sh; never regenerated (rotating a key is a procedure)."
        if [ -n "$PG_ADMIN" ]; then
            echo "DATABASE_URL='$PG_ADMIN user=suiftly password=$pw dbname=$DBNAME'"
        else
            echo "# DATABASE_URL='host=... user=suiftly password=... dbname=suiftly'"
        fi
        echo "SUIFTLY_OPERATOR_TOKEN=$(hex32)"
        echo "SUIFTLY_JWT_SECRET=$(hex32)"
        echo "SUIFTLY_API_KEY_SECRET=$(hex32)"
        echo "SUIFTLY_KEY_ENCRYPTION_KEY=$(hex32)"
    } >"$tmp/suiftly.env"
    if [ -n "$PG_ADMIN" ]; then
        change "set the password of postgresql role suiftly (it is in the new environment file)"
        act psql_admin -c "ALTER ROLE suiftly PASSWORD '$pw'"
    fi
    ensure_file "$tmp/suiftly.env" /etc/suiftly/suiftly.env 0640 root:suiftly
fi

# 6. Deploy settings (health URLs, timeouts) and the roles of this host.
printf '%s\n' "${ROLE_LIST[@]}" >"$tmp/roles"
ensure_file "$tmp/roles" /etc/suiftly/roles 0644 root:root
if [ -f "$(at /etc/suiftly/deploy.conf)" ]; then ok "deploy settings /etc/suiftly/deploy.conf (kept)"; else
    cat >"$tmp/deploy.conf" <<'EOF'
# deploy/deploy.sh settings: the health URL of each role (the ports of suiftly.toml).
HEALTH_INGEST=http://127.0.0.1:9465/health
HEALTH_MANAGER=http://127.0.0.1:9187/manager/health
HEALTH_API=http://127.0.0.1:9470/health
HEALTH_TIMEOUT_SECS=60
EOF
    ensure_file "$tmp/deploy.conf" /etc/suiftly/deploy.conf 0644 root:root
fi

# 7. Units, and enable those of this host's roles.
units_changed=$CHANGES
for u in "${UNITS[@]}"; do
    ensure_file "$DEPLOY_DIR/systemd/$u" "/etc/systemd/system/$u" 0644 root:root
done
if [ "$CHANGES" != "$units_changed" ] && [ "$ROOT" = / ]; then act "$SYSTEMCTL" daemon-reload; fi
for r in "${ROLE_LIST[@]}"; do
    want=("suiftly-$r.service")
    [ "$r" = ingest ] && want+=(suiftly-ingest.socket)
    for u in "${want[@]}"; do
        target=multi-user.target
        [ "${u##*.}" = socket ] && target=sockets.target
        if [ -L "$(at "/etc/systemd/system/$target.wants/$u")" ]; then ok "unit $u enabled"; else
            change "enable unit $u"
            if [ "$ROOT" = / ]; then act "$SYSTEMCTL" enable "$u"; else act systemctl --root="$ROOT" enable "$u" 2>/dev/null; fi
        fi
    done
done

finish
