#!/usr/bin/env bash
# Several ingestors into one database (issue 17, item 4; not a test): run from the repository
# root after `cargo build --release`.
#
#   bash benches/multi_ingest.sh        # N=3 ingestors, RATE=30000 lines/s each, SECS=60
#   RATE=2000 SECS=10 BIN=target/debug/suiftly bash benches/multi_ingest.sh   # a quick try
#
# 1. N `suiftly run` processes (ids gw-1 … gw-N, their own spool, UDP listener, metrics and
#    admin ports, spool on with default fsync, metering on) into one PostgreSQL: the first
#    one's embedded cluster (fsync on), which the others reach through DATABASE_URL.
# 2. One `suiftly loadgen` per ingestor, all at once, over UDP at RATE lines/s for SECS
#    seconds; each tags its rows with its own server id (4001 … 400N) and reports
#    sent / stored / lost for its ingestor.
# 3. Once the database-wide metering watermark has passed the last minute sent, per ingestor
#    the rows metered (infra_per_min by server id), then `suiftly audit` over the run's range
#    (zero differences expected across all ingestors' rows; exit status 1 otherwise).
# Env: N, RATE, SECS, BIN, LATENESS_MS (aggregate.allowed_lateness_ms, default 30000),
# SPOOL_FSYNC (every_batch | interval | never; default interval).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/suiftly}
N=${N:-3}
RATE=${RATE:-30000}
SECS=${SECS:-60}
LATENESS_MS=${LATENESS_MS:-30000}
SPOOL_FSYNC=${SPOOL_FSYNC:-interval}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or set BIN=)" >&2; exit 1; }
[ "$N" -ge 1 ] && [ "$N" -le 9 ] || { echo "N must be 1..9" >&2; exit 1; }
PSQL=$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)

WORK=$(mktemp -d /tmp/suiftly-multi.XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

PIDS=()
cleanup() {
    # The others first: the first ingestor's embedded PostgreSQL stops with it.
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null || true
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

declare -a UDP MPORT CFG
for i in $(seq 1 "$N"); do
    d="$WORK/gw-$i"
    mkdir -p "$d"
    UDP[$i]=$(free_port SOCK_DGRAM)
    MPORT[$i]=$(free_port SOCK_STREAM)
    CFG[$i]="$d/suiftly.toml"
    manager=true; [ "$i" -gt 1 ] && manager=false
    cat > "${CFG[$i]}" <<CFG
data_dir = "$d/data"
[ingest]
id = "gw-$i"
[metrics]
listen = "127.0.0.1:${MPORT[$i]}"
[admin]
listen = "127.0.0.1:0"
[spool]
fsync = "$SPOOL_FSYNC"
[aggregate]
allowed_lateness_ms = $LATENESS_MS
[manager]
enabled = $manager
[[listener]]
name = "udp"
kind = "udp"
address = "127.0.0.1:${UDP[$i]}"
framing = "local"
payload = "sf1"
CFG
done

# The first ingestor starts the database.
SUIFTLY_API_LISTEN=127.0.0.1:0 "$BIN" -c "${CFG[1]}" run 2> "$WORK/gw-1/run.log" &
PIDS+=($!)
for _ in $(seq 1 600); do
    [ -f "$WORK/gw-1/data/conninfo" ] && break
    sleep 0.1
done
CONN=$(cat "$WORK/gw-1/data/conninfo")
for _ in $(seq 1 600); do
    "$PSQL" "$CONN" -qAt -c "SELECT 1 FROM ingestors LIMIT 0" >/dev/null 2>&1 && break
    sleep 0.1
done
for i in $(seq 2 "$N"); do
    DATABASE_URL="$CONN" SUIFTLY_API_LISTEN=127.0.0.1:0 "$BIN" -c "${CFG[$i]}" run 2> "$WORK/gw-$i/run.log" &
    PIDS+=($!)
done
for i in $(seq 1 "$N"); do
    for _ in $(seq 1 600); do
        curl -s -o /dev/null "http://127.0.0.1:${MPORT[$i]}/metrics" && break
        sleep 0.1
    done
    curl -s -o /dev/null "http://127.0.0.1:${MPORT[$i]}/metrics" || { echo "gw-$i did not start:" >&2; cat "$WORK/gw-$i/run.log" >&2; exit 1; }
done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $("$PSQL" --version); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "work dir: $WORK; $N ingestors, spool fsync $SPOOL_FSYNC, metering on (lateness ${LATENESS_MS} ms)"
echo "== $N ingestors, UDP, $RATE lines/s each for $SECS s"
START=$(date -u +%s)
RCVBUF_BEFORE=$(awk '/^Udp:/{getline; print $6; exit}' /proc/net/snmp)
LG=()
for i in $(seq 1 "$N"); do
    "$BIN" -c "${CFG[$i]}" loadgen --udp "127.0.0.1:${UDP[$i]}" --rate "$RATE" --duration-secs "$SECS" \
        --server-id-tag $((4000 + i)) --database-url "$CONN" --settle-secs 120 \
        > "$WORK/gw-$i/loadgen.out" 2> "$WORK/gw-$i/loadgen.err" &
    LG+=($!)
done
for p in "${LG[@]}"; do wait "$p" || true; done
END=$(date -u +%s)
RCVBUF_AFTER=$(awk '/^Udp:/{getline; print $6; exit}' /proc/net/snmp)
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kernel Udp RcvbufErrors during the run: $((RCVBUF_AFTER - RCVBUF_BEFORE))"

# Metering: wait until the database-wide watermark passed the last minute sent.
WANT=$(( (END / 60 + 1) * 60 ))
for _ in $(seq 1 $(( (LATENESS_MS / 1000 + 180) * 5 ))); do
    SB=$("$PSQL" "$CONN" -qAt -c "SELECT COALESCE(extract(epoch FROM settled_before)::bigint, 0) FROM aggregate_state")
    [ "${SB:-0}" -ge "$WANT" ] && break
    sleep 0.2
done
echo "metering watermark: $("$PSQL" "$CONN" -qAt -c "SELECT settled_before FROM aggregate_state") (wanted >= $(date -u -d "@$WANT" +%H:%M:%S))"

printf '%-6s %10s %10s %8s %10s\n' ingestor sent stored lost metered
FAIL=0
for i in $(seq 1 "$N"); do
    line=$(grep -o 'sent=[0-9]* stored=[0-9]* lost=-\?[0-9]*' "$WORK/gw-$i/loadgen.out" || true)
    if [ -z "$line" ]; then
        echo "gw-$i: loadgen reported nothing:" >&2; cat "$WORK/gw-$i/loadgen.err" >&2; FAIL=1; continue
    fi
    sent=${line#sent=}; sent=${sent%% *}
    stored=${line#*stored=}; stored=${stored%% *}
    lost=${line##*lost=}
    metered=$("$PSQL" "$CONN" -qAt -c "SELECT COALESCE(sum(request_count), 0) FROM infra_per_min WHERE server_id = $((4000 + i)) AND bucket >= to_timestamp($START) - interval '1 minute'")
    printf '%-6s %10s %10s %8s %10s\n' "gw-$i" "$sent" "$stored" "$lost" "$metered"
    [ "$lost" = 0 ] || FAIL=1
    [ "$metered" = "$stored" ] || FAIL=1
done
echo "settlements: $("$PSQL" "$CONN" -qAt -c "SELECT count(*) || ' (sequence ' || min(seq) || '..' || max(seq) || ')' FROM settlement_log"); per ingestor: $("$PSQL" "$CONN" -qAt -c "SELECT string_agg(ingestor || ' ' || settlement_seq, ', ' ORDER BY ingestor) FROM aggregate_ingestors")"

echo "== suiftly audit over the run"
FROM=$(date -u -d "@$(( START / 60 * 60 - 60 ))" +%Y-%m-%dT%H:%M:%SZ)
if DATABASE_URL="$CONN" "$BIN" -c "${CFG[1]}" audit --from "$FROM" --to now; then
    echo "audit: zero differences"
else
    echo "audit: DIFFERENCES (exit status $?)"; FAIL=1
fi
for i in $(seq 1 "$N"); do
    grep -E 'ERROR|WARN' "$WORK/gw-$i/run.log" | grep -v 'api_cmd' | head -5 | sed "s/^/gw-$i: /" || true
done
[ "$FAIL" = 0 ] && echo "result: zero loss, metered = stored, audit clean" || { echo "result: FAILED"; exit 1; }
