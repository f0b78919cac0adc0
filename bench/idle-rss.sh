#!/usr/bin/env bash
# Idle memory after start: runs the release binary on embedded SQLite in an empty directory,
# waits until it listens and settles, and prints its resident set (total, anonymous, file).
# Usage: bash bench/idle-rss.sh   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tenantry
bin="$PWD/target/release/tenantry"
dir=$(mktemp -d)
port=${PORT:-18093}
(cd "$dir" && PORT=$port exec "$bin" serve >"$dir/serve.log" 2>&1) &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.2
done
sleep "${SETTLE_SECONDS:-5}"
grep -E 'VmRSS|RssAnon|RssFile|Threads' "/proc/$pid/status"
