#!/usr/bin/env bash
# End-to-end ingest measurements (not a test): run from the repository root after
# `cargo build --release`.
#
#   bash benches/e2e.sh                 # RATE=50000 SECS=60 BULK=2000000 by default
#
# 1. `suiftly run` (release) on an embedded PostgreSQL (fsync on, defaults otherwise).
# 2. zero-loss check: `suiftly loadgen` over UDP at RATE lines/s for SECS seconds.
# 3. sustained throughput: BULK lines over the unix socket as fast as possible (a unix
#    datagram socket pushes back instead of dropping, so this measures the pipeline, not UDP
#    loss); rows/s = BULK / time until the last row is committed.
# 4. ceiling: the same BULK rows exported with `\copy … TO … (FORMAT binary)` and loaded with
#    `psql \copy … FROM … (FORMAT binary)` into the same schema (a second, freshly migrated
#    database on the same server), then the same load repeated with candidate indexes
#    (SKIP_INDEXES=1 leaves those out).
# 5. summary: one table of the paths above with stored rows/s, the ratio to the ceiling, and
#    CPU per row of the ingestor (`suiftly run`'s own process: the load generator is a separate
#    process and never counted in it), of PostgreSQL (every `postgres` process) and of the load
#    generator.
#
# PIN=auto|1|0: with PIN=1 the load generator (and psql for the ceiling) runs on the last core
# and `suiftly run` with its embedded PostgreSQL on the others (`taskset`), so the sender's
# kernel work never competes with the ingestor on a core. PIN=auto (the default) pins on
# machines with 4 or more cores only: on 2 cores it leaves the ingestor and PostgreSQL one
# core together, which measures the scheduler more than the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/suiftly}
RATE=${RATE:-50000}
SECS=${SECS:-60}
BULK=${BULK:-2000000}
SPOOL=${SPOOL:-on}                 # on | off
SPOOL_FSYNC=${SPOOL_FSYNC:-interval}   # every_batch | interval | never
AGGREGATE=${AGGREGATE:-on}         # on | off: streaming metering (needs the spool)
PIN=${PIN:-auto}                   # auto | 1 | 0: taskset the load generator apart (above)
PERF_OUT=${PERF_OUT:-}             # a path: `perf record -g` of `suiftly run` during the unix run
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)

NCPU=$(nproc)
{ [ "$PIN" = auto ] && [ "$NCPU" -ge 4 ]; } && PIN=1
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    SERVER_PIN=(taskset -c "0-$((NCPU - 2))")
    GEN_PIN=(taskset -c "$((NCPU - 1))")
    PIN_NOTE="load generator and psql on cpu $((NCPU - 1)), suiftly + PostgreSQL on cpus 0-$((NCPU - 2))"
else
    SERVER_PIN=()
    GEN_PIN=()
    PIN_NOTE="not pinned (PIN=1 to pin)"
fi

WORK=$(mktemp -d /tmp/suiftly-e2e.XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
UDP_PORT=$(free_port SOCK_DGRAM)
MPORT=$(free_port SOCK_STREAM)
SPOOL_ENABLED=true; [ "$SPOOL" = off ] && SPOOL_ENABLED=false
AGG_ENABLED=true; { [ "$AGGREGATE" = off ] || [ "$SPOOL" = off ]; } && AGG_ENABLED=false
cat > "$WORK/suiftly.toml" <<CFG
data_dir = "$WORK/data"
[metrics]
listen = "127.0.0.1:$MPORT"
[admin]
listen = "127.0.0.1:0"
[spool]
enabled = $SPOOL_ENABLED
fsync = "$SPOOL_FSYNC"
[aggregate]
enabled = $AGG_ENABLED
[[listener]]
name = "udp"
kind = "udp"
address = "127.0.0.1:$UDP_PORT"
framing = "local"
payload = "sf1"
[[listener]]
name = "unix"
kind = "unix"
address = "$WORK/ingest.sock"
framing = "local"
payload = "sf1"
CFG

"${SERVER_PIN[@]}" "$BIN" -c "$WORK/suiftly.toml" run 2> "$WORK/run.log" &
RUN_PID=$!
cleanup() {
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
    # The database and the spool are ~0.5 GB per million rows: kept only with KEEP_WORK=1.
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK/data" "$WORK/rows.bin"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
    [ -f "$WORK/data/conninfo" ] && [ -S "$WORK/ingest.sock" ] && break
    sleep 0.1
done
CONN=$(cat "$WORK/data/conninfo")
# The sockets are bound before the migrations run (socket activation, issue 19), and loadgen
# reads the customers table: wait until the schema is there.
for _ in $(seq 1 600); do
    "$PSQL" "$CONN" -qAt -c "SELECT 1 FROM customers LIMIT 0" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $("$PSQL" --version)"
echo "work dir: $WORK; spool $SPOOL (fsync $SPOOL_FSYNC); metering $AGG_ENABLED; $PIN_NOTE; load average $(cut -d' ' -f1-3 /proc/loadavg)"

echo "net.unix.max_dgram_qlen=$(cat /proc/sys/net/unix/max_dgram_qlen) net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max)"
cpu_of_pg() { # CPU ticks of this run's PostgreSQL: the postmaster of $WORK/data/postgres, its
    # live children, and (in its cutime + cstime) the children it already reaped. Other
    # PostgreSQL servers on the machine are not counted.
    local total=0 pm p
    for pm in $(head -1 "$WORK/data/postgres/postmaster.pid" 2>/dev/null); do
        for p in "$pm" $(pgrep -P "$pm"); do
            total=$((total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0)))
        done
    done
    echo "$total"
}
ctxsw_of() { # context switches (voluntary + involuntary) of every thread of process $1
    cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'
}
TICK=$(getconf CLK_TCK)
SUMMARY=()   # "label|rows/s|suiftly us/row|postgresql us/row|loadgen us/row|note"
# gen LABEL ROWS ARGS...: runs the load generator (pinned apart with PIN=1) and reports the
# CPU the ingestor, PostgreSQL and the load generator itself spent per sent row meanwhile.
gen() {
    local label=$1 rows=$2
    shift 2
    local s0 p0 c0 s1 p1 c1 out
    local perf_pid=
    if [ -n "$PERF_OUT" ] && [[ $label == unix* ]]; then
        perf record -q -F 499 -g -p "$RUN_PID" -o "$PERF_OUT" 2>/dev/null &
        perf_pid=$!
        sleep 0.5
    fi
    s0=$(awk '{print $14 + $15}' "/proc/$RUN_PID/stat"); p0=$(cpu_of_pg); c0=$(ctxsw_of "$RUN_PID")
    /usr/bin/time -f '%U %S' -o "$WORK/loadgen.time" "${GEN_PIN[@]}" \
        "$BIN" -c "$WORK/suiftly.toml" loadgen "$@" | tee "$WORK/loadgen.out" || true
    s1=$(awk '{print $14 + $15}' "/proc/$RUN_PID/stat"); p1=$(cpu_of_pg); c1=$(ctxsw_of "$RUN_PID")
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    out=$(python3 - "$s0" "$s1" "$p0" "$p1" "$TICK" "$rows" "$(tail -1 "$WORK/loadgen.time")" "$(tail -1 "$WORK/loadgen.out")" "$((c1 - c0))" <<'PY'
import re, sys
s0, s1, p0, p1, tick, n = (int(x) for x in sys.argv[1:7])
g = sum(float(x) for x in sys.argv[7].split()[:2]) if re.match(r"^[0-9. ]+$", sys.argv[7]) else float("nan")
m = dict(re.findall(r"(\w+)=(-?[0-9.]+)", sys.argv[8]))
s, p = (s1 - s0) / tick, (p1 - p0) / tick
print(f"{m.get('stored_rate', 'nan')}|{s/n*1e6:.2f}|{p/n*1e6:.2f}|{g/n*1e6:.2f}|stored {m.get('stored', '?')} of {m.get('sent', '?')}")
print(f"cpu during the run: suiftly {s:.2f}s ({s/n*1e6:.2f} us/row, {int(sys.argv[9])/n*1000:.0f} context switches per 1000 rows), postgresql {p:.2f}s ({p/n*1e6:.2f} us/row), loadgen {g:.2f}s ({g/n*1e6:.2f} us/row, not in suiftly's figure)")
PY
)
    echo "$out" | tail -1
    SUMMARY+=("$label|$(echo "$out" | head -1)")
}

if [ -z "${SKIP_UDP:-}" ]; then
echo "== zero-loss run over UDP: $RATE lines/s for $SECS s"
RCVBUF_BEFORE=$(awk '/^Udp:/{getline; print $6; exit}' /proc/net/snmp)
gen "UDP, $RATE lines/s paced" $((RATE * SECS)) --udp "127.0.0.1:$UDP_PORT" --rate "$RATE" --duration-secs "$SECS" --server-id-tag 4094
RCVBUF_AFTER=$(awk '/^Udp:/{getline; print $6; exit}' /proc/net/snmp)
echo "kernel Udp RcvbufErrors during the run: $((RCVBUF_AFTER - RCVBUF_BEFORE))"
fi

echo "== sustained throughput over the unix socket: $BULK lines, unpaced"
gen "unix socket, unpaced" "$BULK" --unix "$WORK/ingest.sock" --rate 10000000 --count "$BULK" --server-id-tag 4095 --settle-secs 120

if [ "$AGG_ENABLED" = true ]; then
    # Metering is a side consumer of the committed batches (bounded channel, block policy):
    # check it saw every row, and report what aggregating them cost inside the pipeline.
    metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n {s += $2} END {printf "%.6f", s}'; }
    # Every row stored (a UDP datagram the kernel dropped never became one).
    EXPECT=$(metric suiftly_ingest_rows_copied_total)
    T0=$(date +%s.%N)
    for _ in $(seq 1 1200); do
        AGG_ROWS=$(metric suiftly_aggregate_rows_total)
        python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$AGG_ROWS" "$EXPECT" && break
        sleep 0.1
    done
    T1=$(date +%s.%N)
    python3 -c "import sys; r=float(sys.argv[1]); s=float(sys.argv[2]); c=float(sys.argv[3]); n=float(sys.argv[4]); print(f'metering: {r:.0f} rows aggregated (of {n:.0f} stored), {(float(sys.argv[6])-float(sys.argv[5])):.2f}s after the last commit; partial+merge {s:.2f}s over {c:.0f} batches = {s/max(r,1)*1e6:.2f} us/row')" \
        "$AGG_ROWS" "$(metric suiftly_aggregate_batch_seconds_sum)" "$(metric suiftly_aggregate_batch_seconds_count)" "$EXPECT" "$T0" "$T1"
fi

summary() { # the one-run table; ratio to the median of the no-index \copy loads
    echo "== summary (spool $SPOOL, fsync $SPOOL_FSYNC, metering $AGG_ENABLED; $PIN_NOTE)"
    python3 - "${CEILINGS[@]}" -- "${SUMMARY[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]
cut = args.index("--")
ceil = statistics.median(float(x) for x in args[:cut]) if cut else None
print(f"{'path':<34} {'rows/s':>9} {'ratio':>6} {'suiftly us/row':>15} {'postgresql us/row':>18} {'loadgen us/row':>15}  note")
for line in args[cut + 1:]:
    label, rate, s, p, g, note = line.split("|")
    r = float(rate)
    ratio = f"{r / ceil:.2f}" if ceil and "unpaced" in label else "-"
    print(f"{label:<34} {r:>9,.0f} {ratio:>6} {s:>15} {p:>18} {g:>15}  {note}")
if ceil:
    label = "psql \\copy (FORMAT binary), median"
    print(f"{label:<34} {ceil:>9,.0f} {'1.00':>6} {'-':>15} {'-':>18} {'-':>15}  no index, {cut} loads")
PY
}
CEILINGS=()
[ -n "${SKIP_CEILING:-}" ] && { summary; exit 0; }
echo "== ceiling: psql \\copy of the same rows into the same schema"
"$PSQL" "$CONN" -qAt -c "\\copy (SELECT * FROM haproxy_raw_logs WHERE server_id = 4095) TO '$WORK/rows.bin' (FORMAT binary)"
ls -l "$WORK/rows.bin"
"$PSQL" "$CONN" -qAt -c "CREATE DATABASE ceiling"
CEIL_CONN="${CONN/dbname=suiftly/dbname=ceiling}"
DATABASE_URL="$CEIL_CONN" "$BIN" migrate 2>/dev/null
# Partitions for the hours the rows fall in.
"$PSQL" "$CEIL_CONN" -qAt <<SQL
DO \$\$
DECLARE h timestamptz;
BEGIN
  -- Native partitions need them; a hypertable makes its own chunks.
  IF (SELECT relkind FROM pg_class WHERE oid = 'haproxy_raw_logs'::regclass) <> 'p' THEN RETURN; END IF;
  FOR h IN SELECT generate_series(date_trunc('hour', now()) - interval '2 hours', date_trunc('hour', now()) + interval '1 hour', interval '1 hour') LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS haproxy_raw_logs_p%s PARTITION OF haproxy_raw_logs FOR VALUES FROM (%L) TO (%L)',
                   to_char(h AT TIME ZONE 'UTC', 'YYYYMMDDHH24'), h, h + interval '1 hour');
  END LOOP;
END \$\$;
SQL
load() {
    local label=$1 ddl=$2
    "$PSQL" "$CEIL_CONN" -qAt -c "TRUNCATE haproxy_raw_logs"
    [ -n "$ddl" ] && "$PSQL" "$CEIL_CONN" -qAt -c "$ddl"
    "$PSQL" "$CEIL_CONN" -qAt -c "CHECKPOINT"
    local t0 t1
    t0=$(date +%s.%N)
    "${GEN_PIN[@]}" "$PSQL" "$CEIL_CONN" -qAt -c "\\copy haproxy_raw_logs FROM '$WORK/rows.bin' (FORMAT binary)"
    t1=$(date +%s.%N)
    local n
    n=$("$PSQL" "$CEIL_CONN" -qAt -c "SELECT count(*) FROM haproxy_raw_logs")
    python3 -c "import sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[4]:<40} rows={n} secs={s:.2f} rows/s={n/s:,.0f}')" "$n" "$t0" "$t1" "$label"
    LAST_RATE=$(python3 -c "import sys; print(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])))" "$n" "$t0" "$t1")
}
for i in 1 2 3; do load "no index (run $i)" ""; CEILINGS+=("$LAST_RATE"); done
if [ -z "${SKIP_INDEXES:-}" ]; then
load "btree(timestamp)" "CREATE INDEX ix_ts ON haproxy_raw_logs (\"timestamp\")"
"$PSQL" "$CEIL_CONN" -qAt -c "DROP INDEX ix_ts"
load "brin(timestamp)" "CREATE INDEX ix_brin ON haproxy_raw_logs USING brin (\"timestamp\")"
"$PSQL" "$CEIL_CONN" -qAt -c "DROP INDEX ix_brin"
load "btree(customer_id, timestamp)" "CREATE INDEX ix_cust ON haproxy_raw_logs (customer_id, \"timestamp\")"
"$PSQL" "$CEIL_CONN" -qAt -c "DROP INDEX ix_cust"
load "btree(api_key_fp)" "CREATE INDEX ix_fp ON haproxy_raw_logs (api_key_fp)"
"$PSQL" "$CEIL_CONN" -qAt -c "DROP INDEX ix_fp"
fi
echo "== metrics after the runs"
curl -s "http://127.0.0.1:$MPORT/metrics" | grep -E '^suiftly_(ingest_(rows_copied|batches|lines_rejected|datagrams)_total|kernel_udp_rcvbuf)' || true
summary
