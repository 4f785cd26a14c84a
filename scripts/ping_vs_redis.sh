#!/usr/bin/env bash
# Ping round trips per second at 16 connections, depth 1 and depth 16: every backend of
# `threadcenter-bench serve` (2 workers), with server timings off (`--no-timing`) and on (the
# driver's default), then redis-server with redis-benchmark's ping_mbulk at the same
# connections and pipeline depth. Issue 15's socket-path target in docs/PERFORMANCE.md.
#
#   scripts/ping_vs_redis.sh [BIN] [ROUNDS]
#
# BIN defaults to target/release/threadcenter-bench; ROUNDS (default 1) repeats the whole set,
# the backends and then redis, in reverse order every other round, so that drift on the
# machine hits every line alike. Prints
# one line per measurement: requests per second, then the CPU time per request of the server
# (its whole process tree: prefork's children, a pool's workers) and of the driver (user +
# system, warm-up included), which moves less from run to run than the rate does and says which
# side a difference comes from. The server's figure times the rate is about the cores it kept
# busy: near 1.00 for a server with one I/O thread, that thread is the limit; the summary is
# scripts/rounds.py's, each rate against redis's in the same round. With PIN=1 every server
# (ours and redis) runs on CPU 1 and every driver (ours and redis-benchmark) on CPU 0, so the
# two sides cannot share or swap cores; without it the scheduler places them. BACKENDS picks
# backends.
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
json=$(mktemp)
took=$(mktemp)
rport=6390
tck=$(getconf CLK_TCK)
trap 'rm -f "$out" "$lines" "$json" "$took"; kill "${srv:-}" 2>/dev/null || true; redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true' EXIT
. "$(dirname "$0")/bench_lib.sh"
# One measurement: server depth timing rps server-cpu-ticks requests driver-cpu-seconds. Printed
# for reading, and kept for scripts/rounds.py: grouped by depth, named by server and timing.
line() {
  awk -v s="$1" -v d="$2" -v t="$3" -v rps="$4" -v ticks="$5" -v n="$6" -v dcpu="$7" -v tck="$tck" \
    -v r="$round" -v keep="$lines" 'BEGIN {
      srv = ticks / tck / n * 1e9; drv = dcpu / n * 1e9
      printf "%-8s depth %-2s timing %-3s %12.0f req/s  server %5.0f ns/req = %4.2f cores",
        s, d, t, rps, srv, rps * srv / 1e9
      printf "  driver %5.0f ns/req  (round %s)\n", drv, r
      name = (t == "-") ? s : s " " t
      printf "depth %s\t%s\t%s\t%s\t%s\t%s\n", d, name, r, rps, srv, drv >> keep }'
}
# One server of ours: every depth, timings off and on.
run_ours() {
  local backend=$1 depth timing flag t0 t1 rps n dcpu
  start_serve "$out" $SRV "$BIN" serve --port 0 --backend "$backend" --workers 2
  for depth in 1 16; do
    for timing in off on; do
      flag=$([ "$timing" = off ] && echo --no-timing || true)
      t0=$(tree_ticks "$srv")
      $DRV "$BIN" load --port "$port" --cmd ping -c 16 -d "$depth" --duration 4s --warmup 1s \
        $flag --json "$json" >/dev/null
      t1=$(tree_ticks "$srv")
      read -r rps n dcpu < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["report"]
print(r["throughput_rps"], r["ok"] + r["warmup_ok"], r["client_cpu_s"])' "$json")
      line "$backend" "$depth" "$timing" "$rps" $((t1 - t0)) "$n" "$dcpu"
    done
  done
  kill "$srv"; wait "$srv" 2>/dev/null || true
}

# redis-server with redis-benchmark, at every depth.
run_redis() {
  local depth n t0 t1 rps rpid
  $SRV redis-server --port "$rport" --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  rpid=$(redis-cli -p "$rport" info server | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}')
  for depth in 1 16; do
    n=$((depth == 1 ? 300000 : 3000000))
    t0=$(tree_ticks "$rpid")
    rps=$( { TIMEFORMAT='%3U %3S'; time $DRV redis-benchmark -p "$rport" -t ping_mbulk -c 16 \
      -P "$depth" -n "$n" -q; } 2>"$took" | tr '\r' '\n' | awk '/requests per second/ {print $2}' \
      | tail -1)
    t1=$(tree_ticks "$rpid")
    line redis "$depth" - "$rps" $((t1 - t0)) "$n" "$(awk '{print $1 + $2}' "$took")"
  done
  redis-cli -p "$rport" shutdown nosave >/dev/null 2>&1 || true
  sleep 0.5
}

for round in $(seq "$ROUNDS"); do
  for server in $(round_order "$round" $BACKENDS redis); do
    if [ "$server" = redis ]; then run_redis; else run_ours "$server"; fi
  done
done

# Medians over the rounds, and each against redis at the same depth, round by round.
echo
echo "medians over $ROUNDS round(s); ÷ redis: geometric mean of the rates' ratio to redis's at the"
echo "same depth, round by round, 95 % interval, range, rounds ahead (scripts/rounds.py)"
python3 "$(dirname "$0")/rounds.py" --ref redis "$lines"
