#!/usr/bin/env bash
# Raw-log storage benchmark (issue 16), not a test: native hourly partitions against a
# TimescaleDB hypertable, same server binaries, same settings, same rows. Run as root from the
# repository root after `cargo build --release`; needs TimescaleDB installed for the
# PostgreSQL binaries used (PG_BIN_DIR, else the newest /usr/lib/postgresql/*/bin).
#
#   bash benches/storage.sh          # BULK=1000000 RUNS=3 DAY_ROWS=2000000 QRUNS=5
#
# Two private clusters (fsync on, shared_buffers 128MB, as the embedded default), one plain and
# one preloading TimescaleDB, each migrated by `suiftly migrate` (so each gets the storage the
# product would give it). Then, alternating the two so the shared machine's noise falls on both:
# 1. end to end: `suiftly run` (defaults: spool, metering) on each, BULK fixture lines over the
#    unix socket from `suiftly loadgen`, stored rows/s; RUNS runs each, a fresh database per run;
# 2. the `\copy … (FORMAT binary)` ceiling: the rows of run 1 loaded into a fresh database of each
#    cluster, RUNS times each;
# 3. a day of fixture-shaped rows (DAY_ROWS, the stored rows repeated and spread evenly over the
#    24 hours ending an hour ago, server ids 1–4): loaded into each, sizes (native partitions,
#    hypertable before and after compressing every chunk), and query times (median of QRUNS,
#    warm): a day of the busiest customer, and one hour of every customer grouped (the shape of
#    settlement, audit and backfill reads).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/suiftly}
BULK=${BULK:-1000000}
RUNS=${RUNS:-3}
DAY_ROWS=${DAY_ROWS:-2000000}
QRUNS=${QRUNS:-5}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or set BIN)" >&2; exit 1; }
PGBIN=${PG_BIN_DIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
PSQL="$PGBIN/psql"; [ -x "$PSQL" ] || PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
WORK=$(mktemp -d /var/tmp/suiftly-storage.XXXXXX)
chmod 755 "$WORK"
RUN_PID=

as_pg() { su postgres -s /bin/sh -c "$1"; }
cleanup() {
    [ -n "$RUN_PID" ] && { kill -TERM "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; }
    for m in native timescaledb; do
        [ -f "$WORK/$m/data/postmaster.pid" ] && as_pg "'$PGBIN/pg_ctl' -D '$WORK/$m/data' -m fast -w stop" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

start_cluster() { # mode
    local m=$1 dir="$WORK/$1"
    mkdir -p "$dir/sock"
    chown -R postgres: "$dir"
    as_pg "'$PGBIN/initdb' -D '$dir/data' -A trust -U postgres -E UTF8 --locale=C >/dev/null"
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$dir/sock'"
        echo "port = 5432"
        echo "shared_buffers = 128MB"
        echo "fsync = on"
        if [ "$m" = timescaledb ]; then
            echo "shared_preload_libraries = 'timescaledb'"
            echo "timescaledb.telemetry_level = off"
        fi
    } >> "$dir/data/postgresql.conf"
    as_pg "'$PGBIN/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w start" >/dev/null
}
conn() { echo "host=$WORK/$1/sock port=5432 user=postgres dbname=$2"; }
sql() { "$PSQL" "$(conn "$1" "$2")" -X -qAt -v ON_ERROR_STOP=1 -c "$3"; }
newdb() { # mode db: created and migrated
    sql "$1" postgres "CREATE DATABASE $2"
    DATABASE_URL=$(conn "$1" "$2") "$BIN" migrate 2>/dev/null
    [ "$(sql "$1" "$2" "SELECT value FROM suiftly_settings WHERE key = 'raw_logs_storage'")" = "$1" ] \
        || { echo "$1/$2: unexpected storage" >&2; exit 1; }
    # The background compression job must not change what is measured.
    if [ "$1" = timescaledb ]; then
        sql "$1" "$2" "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE hypertable_name = 'haproxy_raw_logs'" >/dev/null
    fi
}
partitions() { # mode db from_hours_ago to_hours_ahead (native only)
    [ "$1" = native ] || return 0
    sql "$1" "$2" "DO \$\$ DECLARE h timestamptz; BEGIN
      FOR h IN SELECT generate_series(date_trunc('hour', now()) - interval '$3 hours', date_trunc('hour', now()) + interval '$4 hours', interval '1 hour') LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS haproxy_raw_logs_p%s PARTITION OF haproxy_raw_logs FOR VALUES FROM (%L) TO (%L)',
                       to_char(h AT TIME ZONE 'UTC', 'YYYYMMDDHH24'), h, h + interval '1 hour');
      END LOOP; END \$\$"
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, shared with other engineers' builds and tests"
echo "server: $("$PGBIN/postgres" --version); work dir $WORK (disk: $(df -h "$WORK" | awk 'NR == 2 {print $1}'))"
start_cluster native
start_cluster timescaledb
echo "timescaledb: $(sql timescaledb postgres "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")"

e2e() { # mode run: appends the stored rows/s to E2E[mode]
    local m=$1 r=$2 db="e2e_$2" dir="$WORK/$1/run$2" mport
    newdb "$m" "$db"
    mkdir -p "$dir"
    mport=$(free_port)
    cat > "$dir/suiftly.toml" <<CFG
data_dir = "$dir/data"
[metrics]
listen = "127.0.0.1:$mport"
[admin]
listen = "127.0.0.1:0"
[[listener]]
name = "unix"
kind = "unix"
address = "$dir/ingest.sock"
framing = "local"
payload = "sf1"
CFG
    DATABASE_URL=$(conn "$m" "$db") "$BIN" -c "$dir/suiftly.toml" run 2> "$dir/run.log" &
    RUN_PID=$!
    for _ in $(seq 1 600); do
        [ -S "$dir/ingest.sock" ] && curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null && break
        sleep 0.1
    done
    local out
    out=$(DATABASE_URL=$(conn "$m" "$db") "$BIN" -c "$dir/suiftly.toml" loadgen --unix "$dir/ingest.sock" \
          --rate 10000000 --count "$BULK" --server-id-tag 4095 --settle-secs 120 2>/dev/null)
    kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=
    echo "  $m run $r: $out"
    E2E[$m]+="$(sed -E 's/.*stored_rate=([0-9]+).*/\1/' <<<"$out") "
}

echo "== 1. end to end: $BULK lines over the unix socket, unpaced, $RUNS runs each (alternating)"
declare -A E2E
for r in $(seq 1 "$RUNS"); do
    for m in native timescaledb; do e2e "$m" "$r"; done
done

echo "== 2. \\copy binary ceiling: the rows of run 1 into a fresh database, $RUNS loads each"
"$PSQL" "$(conn native e2e_1)" -X -qAt -c "\\copy (SELECT * FROM haproxy_raw_logs) TO '$WORK/rows.bin' (FORMAT binary)"
ROWS=$(sql native e2e_1 "SELECT count(*) FROM haproxy_raw_logs")
echo "  $ROWS rows, $(du -h "$WORK/rows.bin" | cut -f1)"
declare -A CEIL
for m in native timescaledb; do newdb "$m" ceiling; partitions "$m" ceiling 2 2; done
load() { # mode db file → rows/s
    sql "$1" "$2" "TRUNCATE haproxy_raw_logs"
    sql "$1" "$2" "CHECKPOINT"
    local t0 t1 n
    t0=$(date +%s.%N)
    "$PSQL" "$(conn "$1" "$2")" -X -qAt -c "\\copy haproxy_raw_logs FROM '$3' (FORMAT binary)"
    t1=$(date +%s.%N)
    n=$(sql "$1" "$2" "SELECT count(*) FROM haproxy_raw_logs")
    python3 -c "import sys; print(round(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))))" "$n" "$t0" "$t1"
}
for r in $(seq 1 "$RUNS"); do
    for m in native timescaledb; do
        v=$(load "$m" ceiling "$WORK/rows.bin"); CEIL[$m]+="$v "
        echo "  $m load $r: $v rows/s"
    done
done

echo "== 3. a day of fixture-shaped rows: $DAY_ROWS rows over the 24 hours ending an hour ago"
"$PSQL" "$(conn native e2e_1)" -X -qAt -c "\\copy (
  WITH src AS (SELECT row_number() OVER (ORDER BY \"timestamp\", api_key_fp) - 1 AS i, * FROM haproxy_raw_logs),
       day AS (SELECT date_trunc('hour', now()) - interval '25 hours' AS d0)
  SELECT d0 + g * (interval '24 hours' / $DAY_ROWS), customer_id, path_prefix, config_hex, network,
         (1 + g % 4)::smallint, service_type, api_key_fp, fe_type, traffic_type, event_type, client_ip,
         key_metadata, status_code, bytes_sent, time_total, time_request, time_queue, time_connect,
         time_response, backend_id, termination_state, repeat
  FROM generate_series(0, $DAY_ROWS - 1) g CROSS JOIN day JOIN src ON src.i = g % $ROWS
) TO '$WORK/day.bin' (FORMAT binary)"
echo "  $(du -h "$WORK/day.bin" | cut -f1) binary COPY file"
declare -A DAYLOAD
for m in native timescaledb; do
    newdb "$m" day
    partitions "$m" day 26 1
    v=$(load "$m" day "$WORK/day.bin"); DAYLOAD[$m]=$v
    sql "$m" day "VACUUM ANALYZE haproxy_raw_logs"
    echo "  $m: loaded at $v rows/s"
done
NATIVE_BYTES=$(sql native day "SELECT sum(pg_total_relation_size(inhrelid))::int8 FROM pg_inherits WHERE inhparent = 'haproxy_raw_logs'::regclass")
TS_BYTES=$(sql timescaledb day "SELECT hypertable_size('haproxy_raw_logs')")
CUST=$(sql native day "SELECT customer_id FROM haproxy_raw_logs WHERE customer_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
CUST_ROWS=$(sql native day "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id = $CUST")
Q1="SELECT count(*), sum(bytes_sent), sum(repeat) FROM haproxy_raw_logs WHERE customer_id = $CUST AND \"timestamp\" >= date_trunc('hour', now()) - interval '25 hours' AND \"timestamp\" < date_trunc('hour', now()) - interval '1 hour'"
Q2="SELECT customer_id, count(*), sum(bytes_sent) FROM haproxy_raw_logs WHERE \"timestamp\" >= date_trunc('hour', now()) - interval '13 hours' AND \"timestamp\" < date_trunc('hour', now()) - interval '12 hours' GROUP BY 1"
qtime() { # mode query → median ms of QRUNS (after one warm-up)
    local args=(-c '\timing on') i
    for i in $(seq 0 "$QRUNS"); do args+=(-c "$2"); done
    "$PSQL" "$(conn "$1" day)" -X -qAt "${args[@]}" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n "$QRUNS" | median
}
check() { # same answer on both sides
    [ "$(sql native day "$1")" = "$(sql timescaledb day "$1")" ] || { echo "different answers: $1" >&2; exit 1; }
}
check "$Q1"; check "$Q2 ORDER BY 1"
declare -A QT
QT[native1]=$(qtime native "$Q1"); QT[native2]=$(qtime native "$Q2")
QT[ts1]=$(qtime timescaledb "$Q1"); QT[ts2]=$(qtime timescaledb "$Q2")
echo "  compressing every chunk of the hypertable"
t0=$(date +%s.%N)
sql timescaledb day "SELECT count(compress_chunk(c)) FROM show_chunks('haproxy_raw_logs') c" >/dev/null
t1=$(date +%s.%N)
COMPRESS_SECS=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t0" "$t1")
sql timescaledb day "VACUUM ANALYZE haproxy_raw_logs"
TSC_BYTES=$(sql timescaledb day "SELECT hypertable_size('haproxy_raw_logs')")
STATS=$(sql timescaledb day "SELECT count(*) FILTER (WHERE compression_status = 'Compressed'), sum(before_compression_total_bytes)::int8, sum(after_compression_total_bytes)::int8 FROM chunk_compression_stats('haproxy_raw_logs')")
check "$Q1"; check "$Q2 ORDER BY 1"
QT[tsc1]=$(qtime timescaledb "$Q1"); QT[tsc2]=$(qtime timescaledb "$Q2")

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
mib() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1048576:.1f} MiB')" "$1"; }
EN=$(med "${E2E[native]}"); ET=$(med "${E2E[timescaledb]}")
CN=$(med "${CEIL[native]}"); CT=$(med "${CEIL[timescaledb]}")
echo
echo "== results (medians; ratio = hypertable / native)"
echo "| measure | native partitions | hypertable | ratio |"
echo "|---|---|---|---|"
echo "| end to end, stored rows/s ($BULK lines, runs: native ${E2E[native]}/ hypertable ${E2E[timescaledb]}) | $EN | $ET | $(ratio "$ET" "$EN") |"
echo "| \\copy binary ceiling, rows/s ($ROWS rows, loads: native ${CEIL[native]}/ hypertable ${CEIL[timescaledb]}) | $CN | $CT | $(ratio "$CT" "$CN") |"
echo "| \\copy of the day ($DAY_ROWS rows into 24 hours), rows/s | ${DAYLOAD[native]} | ${DAYLOAD[timescaledb]} | $(ratio "${DAYLOAD[timescaledb]}" "${DAYLOAD[native]}") |"
echo "| size of the day, uncompressed | $(mib "$NATIVE_BYTES") | $(mib "$TS_BYTES") | $(ratio "$TS_BYTES" "$NATIVE_BYTES") |"
echo "| size of the day, every chunk compressed (took ${COMPRESS_SECS} s) | — | $(mib "$TSC_BYTES") | $(ratio "$TSC_BYTES" "$NATIVE_BYTES") |"
echo "| a day of customer $CUST ($CUST_ROWS rows), ms: uncompressed / compressed | ${QT[native1]} | ${QT[ts1]} / ${QT[tsc1]} | $(ratio "${QT[ts1]}" "${QT[native1]}") / $(ratio "${QT[tsc1]}" "${QT[native1]}") |"
echo "| one hour, every customer grouped, ms: uncompressed / compressed | ${QT[native2]} | ${QT[ts2]} / ${QT[tsc2]} | $(ratio "${QT[ts2]}" "${QT[native2]}") / $(ratio "${QT[tsc2]}" "${QT[native2]}") |"
echo "chunk_compression_stats (compressed chunks, bytes before, bytes after): $STATS"
