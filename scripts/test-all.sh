#!/usr/bin/env bash
# Every test, Rust and browser: the README's test command, and what `.ci/run` runs after its
# checks. On a fresh Debian machine with Rust and Node (run as root): installs what is missing
# (PostgreSQL, HAProxy, systemd and promtool for issue 19's tests, Chromium; TimescaleDB from the shared build when there is one), `npm
# ci`, the dashboard's unit tests, lint, type check and build, `cargo test --workspace`, the
# TimescaleDB storage matrix (issue 16), then the Playwright suite against the real `suiftly
# api` (which serves the build just made). Prints one plain `N passed, N failed` total at the
# end; exits non-zero if anything failed.
#
#   bash scripts/test-all.sh                      # everything
#   SKIP_RUST=1 bash scripts/test-all.sh          # dashboard only (still builds the binary)
#   SKIP_TIMESCALEDB=1 bash scripts/test-all.sh   # without the storage matrix
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac

need=()
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
for t in systemd-socket-activate:systemd systemd-analyze:systemd promtool:prometheus; do command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t##*:}"); done  # issue 19 tests
chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$chromium" ] || need+=(chromium fonts-liberation)
if [ "${#need[@]}" -gt 0 ]; then
    echo "test-all: installing ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
command -v npm >/dev/null 2>&1 || { echo "test-all: node and npm are required (Node 20 or newer)" >&2; exit 1; }

# TimescaleDB (issue 16): install the shared build when the machine has one, then run the
# storage matrix below if the server can load it. `.ci/timescaledb` prints "yes" or "no" and
# exits non-zero when TimescaleDB is installed but cannot be made to load (the hypertable
# branch must not go untested because of it).
timescaledb=no
if [ -z "${SKIP_RUST:-}" ] && [ -z "${SKIP_TIMESCALEDB:-}" ]; then
    timescaledb=$(bash .ci/timescaledb) || {
        echo "test-all: TimescaleDB is installed but PostgreSQL cannot load it (see above)" >&2
        exit 1
    }
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
total_p=0
total_f=0
summary=""
add() {
    total_p=$((total_p + $1)); total_f=$((total_f + $2))
    summary="${summary}test-all: $3: $1 passed, $2 failed"$'\n'
    echo "test-all: $3: $1 passed, $2 failed"
}

echo "test-all: dashboard dependencies (npm ci)"
(cd webapp && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

echo "test-all: dashboard unit tests (vitest)"
set +e
(cd webapp && npx vitest run --reporter=default --reporter=json --outputFile.json="$logs/vitest.json")
s=$?
set -e
[ "$s" -eq 0 ] || status=1
if [ -f "$logs/vitest.json" ]; then
    read -r p f < <(node -e 'const r=require(process.argv[1]);console.log(r.numPassedTests, r.numFailedTests)' "$logs/vitest.json")
    add "$p" "$f" vitest
else
    add 0 1 vitest
fi

echo "test-all: dashboard lint, type check and build"
if ! (cd webapp && npm run --silent lint && npm run --silent build); then
    status=1
    add 0 1 "lint/typecheck/build"
fi

count() { awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
                    END { printf "%d %d\n", p, f }' "$@"; }
if [ -z "${SKIP_RUST:-}" ]; then
    echo "test-all: cargo test --workspace"
    set +e
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$logs/cargo.log"
    s=${PIPESTATUS[0]}
    set -e
    [ "$s" -eq 0 ] || status=1
    read -r p f < <(count "$logs/cargo.log")
    [ "$s" -eq 0 ] || [ "$f" -gt 0 ] || f=1   # a build failure counts as a failure
    add "$p" "$f" "cargo test (storage native, all tests)"

    # Storage matrix: the ingest, fault-injection, metering, pipeline and CLI tests and the
    # settlement / operator SQL / audit tests again, with every test cluster preloading
    # TimescaleDB (raw rows in a hypertable), plus the hypertable-only tests. Same binaries.
    if [ "$timescaledb" = yes ]; then
        s=0
        : >"$logs/timescaledb.log"
        for args in "--test pg_ingest --test writer --test rejected --test fault --test metering --test pipeline --test cli" \
                    "--lib -- tests_pg::" "--test timescaledb -- --include-ignored"; do
            echo "test-all: storage timescaledb: SUIFTLY_TEST_STORAGE=timescaledb cargo test --workspace --locked --no-fail-fast $args"
            set +e
            # shellcheck disable=SC2086 # $args is a list of arguments
            SUIFTLY_TEST_STORAGE=timescaledb cargo test --workspace --locked --no-fail-fast $args 2>&1 | tee -a "$logs/timescaledb.log"
            [ "${PIPESTATUS[0]}" -eq 0 ] || s=1
            set -e
        done
        [ "$s" -eq 0 ] || status=1
        read -r p f < <(count "$logs/timescaledb.log")
        [ "$s" -eq 0 ] || [ "$f" -gt 0 ] || f=1
        add "$p" "$f" "cargo test (storage timescaledb, the matrix)"
    elif [ -z "${SKIP_TIMESCALEDB:-}" ]; then
        summary="${summary}test-all: storage timescaledb: not run (TimescaleDB not installed here; see .ci/timescaledb)"$'\n'
        echo "test-all: storage timescaledb: not run (TimescaleDB not installed here; see .ci/timescaledb)"
    fi
fi
# The browser suite drives the binary (cargo test builds it; build it here when skipped).
echo "test-all: browser suite (Playwright + $("$chromium" --version 2>/dev/null | head -1))"
set +e
if cargo build --locked --bin suiftly --quiet; then
    (cd webapp && SUIFTLY_BIN="$target/debug/suiftly" CHROMIUM_PATH="$chromium" npx playwright test 2>&1) | tee "$logs/e2e.log"
    s=${PIPESTATUS[0]}
else
    echo "test-all: the suiftly binary does not build: browser suite not run" | tee "$logs/e2e.log"
    s=1
fi
set -e
[ "$s" -eq 0 ] || status=1
line=$(grep -E '^browser: [0-9]+ passed, [0-9]+ failed' "$logs/e2e.log" | tail -1 || true)
if [ -n "$line" ]; then
    read -r p f < <(echo "$line" | awk '{ print $2, $4 }')
    add "$p" "$f" browser
else
    add 0 1 browser
fi

printf '%s' "$summary"
echo "test-all: exit status $status"
echo "${total_p} passed, ${total_f} failed"
exit "$status"
