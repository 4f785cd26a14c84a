#!/usr/bin/env bash
# Ping round trips per second at 16 connections, depth 1 and depth 16: every backend of
# `threadcenter-bench serve` (2 workers), then redis-server with redis-benchmark's ping_mbulk
# at the same connections and pipeline depth. The issue-6 target in docs/PERFORMANCE.md.
#
#   scripts/ping_vs_redis.sh [BIN]     BIN defaults to target/release/threadcenter-bench
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server). Run it on an
# otherwise idle machine: the server, the driver and redis share its cores.
set -euo pipefail
BIN=${1:-target/release/threadcenter-bench}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"; kill "${srv:-}" 2>/dev/null || true' EXIT
for backend in process rayon tokio prefork; do
  "$BIN" serve --port 0 --backend "$backend" --workers 2 >"$out" 2>/dev/null &
  srv=$!
  for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
  for depth in 1 16; do
    rps=$("$BIN" load --port "$port" --cmd ping -c 16 -d "$depth" --duration 5s --warmup 1s \
      --no-timing | awk '/throughput/ {print $2}')
    printf '%-8s depth %-2s %12.0f req/s\n' "$backend" "$depth" "$rps"
  done
  kill "$srv"; wait "$srv" 2>/dev/null || true
done

rport=6390
redis-server --port "$rport" --save '' --appendonly no --daemonize yes >/dev/null
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
for depth in 1 16; do
  n=$((depth == 1 ? 300000 : 3000000))
  rps=$(redis-benchmark -p "$rport" -t ping_mbulk -c 16 -P "$depth" -n "$n" -q \
    | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
  printf '%-8s depth %-2s %12.0f req/s\n' redis "$depth" "$rps"
done
redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
