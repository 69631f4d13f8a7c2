#!/usr/bin/env bash
# Every test, Rust and browser, on a fresh Debian machine with Rust and Node (run as root):
# installs what is missing (PostgreSQL, HAProxy, Chromium), `npm ci`, the dashboard's unit
# tests, lint, type check and build, `cargo test --workspace`, then the Playwright suite
# against the real `suiftly api` (which serves the build just made). Prints one plain
# `N passed, N failed` total at the end; exits non-zero if anything failed.
#
#   scripts/test-all.sh            # everything
#   SKIP_RUST=1 scripts/test-all.sh  # dashboard only (still builds the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac

need=()
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
chromium=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$chromium" ] || need+=(chromium fonts-liberation)
if [ "${#need[@]}" -gt 0 ]; then
    echo "test-all: installing ${need[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
command -v npm >/dev/null 2>&1 || { echo "test-all: node and npm are required (Node 20 or newer)" >&2; exit 1; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
total_p=0
total_f=0
add() { total_p=$((total_p + $1)); total_f=$((total_f + $2)); echo "test-all: $3: $1 passed, $2 failed"; }

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

if [ -z "${SKIP_RUST:-}" ]; then
    echo "test-all: cargo test --workspace"
    set +e
    cargo test --workspace --locked 2>&1 | tee "$logs/cargo.log"
    s=${PIPESTATUS[0]}
    set -e
    [ "$s" -eq 0 ] || status=1
    read -r p f < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
                         END { printf "%d %d\n", p, f }' "$logs/cargo.log")
    [ "$s" -eq 0 ] || [ "$f" -gt 0 ] || f=1   # a build failure counts as a failure
    add "$p" "$f" "cargo test"
fi
# The browser suite drives the binary (cargo test builds it; build it here when skipped).
cargo build --locked --bin suiftly --quiet

echo "test-all: browser suite (Playwright + $("$chromium" --version 2>/dev/null | head -1))"
set +e
(cd webapp && SUIFTLY_BIN="$target/debug/suiftly" CHROMIUM_PATH="$chromium" npx playwright test 2>&1) | tee "$logs/e2e.log"
s=${PIPESTATUS[0]}
set -e
[ "$s" -eq 0 ] || status=1
line=$(grep -E '^browser: [0-9]+ passed, [0-9]+ failed' "$logs/e2e.log" | tail -1 || true)
if [ -n "$line" ]; then
    read -r p f < <(echo "$line" | awk '{ print $2, $4 }')
    add "$p" "$f" browser
else
    add 0 1 browser
fi

echo "test-all: exit status $status"
echo "${total_p} passed, ${total_f} failed"
exit "$status"
