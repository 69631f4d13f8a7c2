#!/usr/bin/env bash
# Load benchmark (issue 15, not a test): the customer API keeps answering while 500 idle
# connections are held open and slowloris clients drip request heads, under `wrk`.
#
#   cargo build --release --bin suiftly && scripts/bench-api-abuse.sh
#
# Env: BIN (default target/release/suiftly, or $CARGO_TARGET_DIR/release/suiftly), PORT (38970),
# RUNS (3 wrk runs per phase), DUR (20s per run), CONNS (50 wrk connections), IDLE (500), SLOW
# (20), PATHS (/health = one PostgreSQL round trip per request), IDLE_MS (the server's
# `api.idle_timeout_ms`; default 5000 = the product default, so idle connections are closed
# after 5 s and the abuse client reopens them: a churn; IDLE_MS=600000 keeps all IDLE open).
# Phases: baseline (wrk alone), abuse (wrk while scripts/api_abuse.py holds IDLE idle and SLOW
# slowloris connections, reopening every one the server closes). Prints the per-run figures,
# the medians, the abuse client's summary and the server's connection counters. The embedded
# PostgreSQL under a temporary data_dir is started and stopped by `suiftly api` itself.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/suiftly}
PORT=${PORT:-38970}
MPORT=$((PORT + 1))
RUNS=${RUNS:-3}
DUR=${DUR:-20s}
CONNS=${CONNS:-50}
IDLE=${IDLE:-500}
SLOW=${SLOW:-20}
URL_PATH=${PATHS:-/health}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release --bin suiftly)"; exit 1; }

tmp=$(mktemp -d)
chmod o+x "$tmp"   # the embedded PostgreSQL runs as `postgres` and must reach data_dir
api=""
abuse=""
cleanup() {
    [ -n "$abuse" ] && kill "$abuse" 2>/dev/null || true
    if [ -n "$api" ]; then kill -TERM "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
cat > "$tmp/bench.toml" <<CFG
data_dir = "$tmp/data"
[api]
listen = "127.0.0.1:$PORT"
metrics_listen = "127.0.0.1:$MPORT"
ip_requests_per_second = 0        # wrk is one client address: measure the server, not the limiter
customer_requests_per_second = 0
idle_timeout_ms = ${IDLE_MS:-5000}
CFG
env -u DATABASE_URL -u MOCK_AUTH RUST_LOG=warn "$BIN" --config "$tmp/bench.toml" api > "$tmp/api.log" 2>&1 &
api=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 "$api" 2>/dev/null || { cat "$tmp/api.log"; exit 1; }
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/health" >/dev/null

summary() { # file -> "rps p50_ms p99_ms non2xx socket_errors"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /Requests\/sec/ { rps = $2 }
        /Non-2xx/ { non = $NF }
        /Socket errors/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
        END { printf "%s %.2f %.2f %d %d\n", rps, p50, p99, non + 0, err + 0 }' "$1"
}
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
phase() { # label
    local label=$1
    for i in $(seq 1 "$RUNS"); do
        wrk -t2 -c"$CONNS" -d"$DUR" --latency "http://127.0.0.1:$PORT$URL_PATH" > "$tmp/wrk-$label-$i.txt"
        echo "$label run $i: $(summary "$tmp/wrk-$label-$i.txt")  (req/s p50_ms p99_ms non2xx socket_errors)"
    done
    for col in 1 2 3; do
        for i in $(seq 1 "$RUNS"); do summary "$tmp/wrk-$label-$i.txt" | awk -v c=$col '{ print $c }'; done | median
    done | paste -sd' ' | awk -v l="$label" '{ printf "%s median: %s req/s, p50 %s ms, p99 %s ms\n", l, $1, $2, $3 }'
}

echo "== $(nproc) cores, shared; wrk -t2 -c$CONNS -d$DUR $URL_PATH; $RUNS runs per phase; idle_timeout_ms ${IDLE_MS:-5000}; $IDLE idle + $SLOW slowloris"
phase baseline
python3 scripts/api_abuse.py 127.0.0.1 "$PORT" "$IDLE" "$SLOW" > "$tmp/abuse.json" &
abuse=$!
sleep 12   # the idle/slowloris population is up and has been through the timeouts once
phase abuse
kill -TERM "$abuse"; wait "$abuse" || true; abuse=""
echo "abuse client: $(cat "$tmp/abuse.json")"
echo "server: $(curl -fs "http://127.0.0.1:$MPORT/metrics" | grep -E '^suiftly_api_(connections_closed_total|connection_cap_reached_total|open_connections)' | paste -sd' ')"
