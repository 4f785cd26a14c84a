#!/usr/bin/env bash
# Tiny jobs end to end: `fib` with n = 1 at 16 connections x depth 16, where the hand-off to
# the workers, not the work, sets the rate. Issue 15's "shm >= rayon" target in
# docs/PERFORMANCE.md. With SIZE, C and D it runs any closed-loop `fib` load the same way.
#
#   scripts/tiny_jobs.sh [BIN] [ROUNDS]
#
# BIN defaults to target/release/threadcenter-bench; ROUNDS (default 5) repeats the set,
# backends in turn, their order reversed every other round, so that drift on the machine hits
# every backend alike. Each run is a
# fresh `serve --backend B --workers W` and `load -c C -d D --duration 2s --warmup 500ms --size
# SIZE --kernel fib`. Prints one line per run: requests per second, then the CPU time per
# request of the server's whole process tree (workers included) and of the driver, warm-up
# included, the share of the machine's CPU time that was idle meanwhile, and the machine's
# inter-processor interrupts and context switches per request (`machine_ipis`,
# `machine_switches`).
# The summary (scripts/rounds.py) gives each backend's medians and, against REF, the ratio of
# the two rates round by round: its geometric mean with a 95 % interval, its range and how many
# rounds the backend was ahead, since one round on a shared machine can be off by a fifth.
#
# Environment: BACKENDS (default "shm rayon"), REF (default rayon), W (2), C (16), D (16),
# SIZE (fib's n, default 1; the 2-core sweep grid's 20 µs was n = 10786, at C=4 D=1),
# SHM_SPIN (a --spin-us for shm; default: the server's own), PIN=1 (servers on CPU 1, drivers
# on CPU 0). Run it on an otherwise idle machine.
set -euo pipefail
BIN=${1:-target/release/threadcenter-bench}
ROUNDS=${2:-5}
BACKENDS=${BACKENDS:-shm rayon}
REF=${REF:-rayon}
W=${W:-2} C=${C:-16} D=${D:-16} SIZE=${SIZE:-1}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }

SRV= DRV=
if [ "${PIN:-0}" = 1 ]; then SRV="taskset -c 1" DRV="taskset -c 0"; fi
out=$(mktemp)
lines=$(mktemp)
json=$(mktemp)
tck=$(getconf CLK_TCK)
trap 'rm -f "$out" "$lines" "$json"; kill "${srv:-}" 2>/dev/null || true' EXIT

. "$(dirname "$0")/bench_lib.sh"

for round in $(seq "$ROUNDS"); do
  for backend in $(round_order "$round" $BACKENDS); do
    extra=()
    if [ "$backend" = shm ] && [ -n "${SHM_SPIN:-}" ]; then extra=(--spin-us "$SHM_SPIN"); fi
    start_serve "$out" $SRV "$BIN" serve --port 0 --backend "$backend" --workers "$W" "${extra[@]}"
    t0=$(tree_ticks "$srv")
    read -r idle0 all0 < <(machine_ticks)
    ipi0=$(machine_ipis)
    sw0=$(machine_switches)
    $DRV "$BIN" load --port "$port" -c "$C" -d "$D" --duration 2s --warmup 500ms --size "$SIZE" \
      --kernel fib --json "$json" >/dev/null
    read -r idle1 all1 < <(machine_ticks)
    ipi1=$(machine_ipis)
    sw1=$(machine_switches)
    t1=$(tree_ticks "$srv")
    kill "$srv"; wait "$srv" 2>/dev/null || true
    python3 - "$json" "$backend" $((t1 - t0)) "$tck" "$round" "$lines" \
      $((idle1 - idle0)) $((all1 - all0)) $((ipi1 - ipi0)) $((sw1 - sw0)) <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
backend, ticks, tck, rnd = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
idle = int(sys.argv[7]) / max(1, int(sys.argv[8])) * 100
n = r["ok"] + r["warmup_ok"]
rate, server, driver = r["throughput_rps"], ticks / tck / n * 1e9, r["client_cpu_s"] / n * 1e9
ipis, switches = int(sys.argv[9]) / n, int(sys.argv[10]) / n
print(f"{backend:<8} {rate:10.0f} req/s  server {server:6.0f} ns/req  driver {driver:5.0f} ns/req"
      f"  idle {idle:4.1f} %  IPIs {ipis:5.3f}/req  switches {switches:5.2f}/req  (round {rnd})")
with open(sys.argv[6], "a") as lines:
    print("tiny", backend, rnd, rate, server, driver, sep="\t", file=lines)
PY
  done
done

echo
echo "medians over $ROUNDS round(s); ÷ $REF: geometric mean of the rates' ratio round by round,"
echo "95 % interval, range, rounds ahead (scripts/rounds.py)"
python3 "$(dirname "$0")/rounds.py" --ref "$REF" "$lines"
