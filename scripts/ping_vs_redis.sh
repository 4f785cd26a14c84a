#!/usr/bin/env bash
# Ping round trips per second at 16 connections, depth 1 and depth 16: every backend of
# `threadcenter-bench serve` (2 workers), with server timings off (`--no-timing`) and on (the
# driver's default), then redis-server with redis-benchmark's ping_mbulk at the same
# connections and pipeline depth. Issue 15's socket-path target in docs/PERFORMANCE.md.
#
#   scripts/ping_vs_redis.sh [BIN] [ROUNDS]
#
# BIN defaults to target/release/threadcenter-bench; ROUNDS (default 1) repeats the whole set,
# backends and redis alternating, so that drift on the machine hits every line alike. Prints
# one line per measurement: `server depth timing req/s`. With PIN=1 every server (ours and
# redis) runs on CPU 1 and every driver (ours and redis-benchmark) on CPU 0, so the two sides
# cannot share or swap cores; without it the scheduler places them. BACKENDS picks backends.
#
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server). Run it on an
# otherwise idle machine: the server, the driver and redis share its cores.
set -euo pipefail
BIN=${1:-target/release/threadcenter-bench}
ROUNDS=${2:-1}
BACKENDS=${BACKENDS:-process rayon tokio prefork}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not found" >&2; exit 1; }

SRV= DRV=
if [ "${PIN:-0}" = 1 ]; then SRV="taskset -c 1" DRV="taskset -c 0"; fi
out=$(mktemp)
lines=$(mktemp)
rport=6390
trap 'rm -f "$out" "$lines"; kill "${srv:-}" 2>/dev/null || true; redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true' EXIT
for round in $(seq "$ROUNDS"); do
  for backend in $BACKENDS; do
    $SRV "$BIN" serve --port 0 --backend "$backend" --workers 2 >"$out" 2>/dev/null &
    srv=$!
    for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
    for depth in 1 16; do
      for timing in off on; do
        flag=$([ "$timing" = off ] && echo --no-timing || true)
        rps=$($DRV "$BIN" load --port "$port" --cmd ping -c 16 -d "$depth" --duration 4s --warmup 1s \
          $flag | awk '/^  throughput/ {print $2; exit}')
        printf '%-8s depth %-2s timing %-3s %12.0f req/s  (round %s)\n' \
          "$backend" "$depth" "$timing" "$rps" "$round" | tee -a "$lines"
      done
    done
    kill "$srv"; wait "$srv" 2>/dev/null || true
  done

  $SRV redis-server --port "$rport" --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  for depth in 1 16; do
    n=$((depth == 1 ? 300000 : 3000000))
    rps=$($DRV redis-benchmark -p "$rport" -t ping_mbulk -c 16 -P "$depth" -n "$n" -q \
      | tr '\r' '\n' | awk '/requests per second/ {print $2}' | tail -1)
    printf '%-8s depth %-2s timing %-3s %12.0f req/s  (round %s)\n' redis "$depth" - "$rps" "$round" \
      | tee -a "$lines"
  done
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  sleep 0.5
done

# Medians over the rounds, and each against redis at the same depth.
echo
echo "median over $ROUNDS round(s); ratio = this ÷ redis at the same depth"
sort -k1,1 -k3,3n -k5,5 -k6,6n "$lines" | awk '
  { key = $1 " " $3 " " $5; v[key] = v[key] " " $6; n[key]++ }
  END {
    for (k in v) {
      split(substr(v[k], 2), a, " "); m = n[k]
      med[k] = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    for (k in med) {
      split(k, f, " "); r = med["redis " f[2] " -"]
      printf "%-8s depth %-2s timing %-3s %12.0f req/s  %5.2fx redis\n", f[1], f[2], f[3], med[k], r ? med[k] / r : 0
    }
  }' | sort -k3,3n -k1,1 -k5,5
