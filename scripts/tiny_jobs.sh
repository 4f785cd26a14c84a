#!/usr/bin/env bash
# Tiny jobs end to end: `fib` with n = 1 at 16 connections x depth 16, where the hand-off to
# the workers, not the work, sets the rate. Issue 15's "shm >= rayon" target in
# docs/PERFORMANCE.md.
#
#   scripts/tiny_jobs.sh [BIN] [ROUNDS]
#
# BIN defaults to target/release/threadcenter-bench; ROUNDS (default 5) repeats the set,
# backends alternating, so that drift on the machine hits every backend alike. Each run is a
# fresh `serve --backend B --workers W` and `load -c C -d D --duration 2s --warmup 500ms --size 1
# --kernel fib`. Prints one line per run: requests per second, then the CPU time per request
# of the server's whole process tree (workers included) and of the driver, warm-up included.
# The summary gives each backend's median and, against REF, the ratio of the two rates round
# by round: its median, its range and how many rounds the backend was ahead, since one round
# on a shared machine can be off by a fifth either way.
#
# Environment: BACKENDS (default "shm rayon"), REF (default rayon), W (2), C (16), D (16),
# SHM_SPIN (a --spin-us for shm; default: the server's own), PIN=1 (servers on CPU 1, drivers
# on CPU 0). Run it on an otherwise idle machine.
set -euo pipefail
BIN=${1:-target/release/threadcenter-bench}
ROUNDS=${2:-5}
BACKENDS=${BACKENDS:-shm rayon}
REF=${REF:-rayon}
W=${W:-2} C=${C:-16} D=${D:-16}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }

SRV= DRV=
if [ "${PIN:-0}" = 1 ]; then SRV="taskset -c 1" DRV="taskset -c 0"; fi
out=$(mktemp)
lines=$(mktemp)
json=$(mktemp)
tck=$(getconf CLK_TCK)
trap 'rm -f "$out" "$lines" "$json"; kill "${srv:-}" 2>/dev/null || true' EXIT

# CPU clock ticks (user + system) used so far by a process and its live descendants.
tree_ticks() {
  local all=("$1") i=0 total=0 p
  while [ "$i" -lt "${#all[@]}" ]; do
    for p in $(pgrep -P "${all[$i]}" || true); do all+=("$p"); done
    i=$((i + 1))
  done
  for p in "${all[@]}"; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

for round in $(seq "$ROUNDS"); do
  for backend in $BACKENDS; do
    extra=()
    if [ "$backend" = shm ] && [ -n "${SHM_SPIN:-}" ]; then extra=(--spin-us "$SHM_SPIN"); fi
    $SRV "$BIN" serve --port 0 --backend "$backend" --workers "$W" "${extra[@]}" >"$out" 2>/dev/null &
    srv=$!
    for _ in $(seq 200); do grep -q '^listening on' "$out" && break; sleep 0.05; done
    port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
    t0=$(tree_ticks "$srv")
    $DRV "$BIN" load --port "$port" -c "$C" -d "$D" --duration 2s --warmup 500ms --size 1 \
      --kernel fib --json "$json" >/dev/null
    t1=$(tree_ticks "$srv")
    kill "$srv"; wait "$srv" 2>/dev/null || true
    python3 - "$json" "$backend" $((t1 - t0)) "$tck" "$round" <<'PY' | tee -a "$lines"
import json, sys
r = json.load(open(sys.argv[1]))["report"]
backend, ticks, tck, rnd = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
n = r["ok"] + r["warmup_ok"]
print(f"{backend:<8} {r['throughput_rps']:10.0f} req/s  server {ticks / tck / n * 1e9:6.0f} ns/req  "
      f"driver {r['client_cpu_s'] / n * 1e9:5.0f} ns/req  (round {rnd})")
PY
  done
done

echo
echo "median over $ROUNDS round(s); ÷ $REF: the rates' ratio round by round"
python3 - "$lines" "$REF" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.split()
    runs[f[0]][f[-1].rstrip(")")] = (float(f[1]), float(f[4]), float(f[7]))
ref = runs.get(sys.argv[2], {})
for backend, by_round in runs.items():
    rps, srv, drv = (statistics.median(c) for c in zip(*by_round.values()))
    text = f"{backend:<8} {rps:10.0f} req/s  server {srv:6.0f} + driver {drv:5.0f} ns/req"
    ratios = [v[0] / ref[k][0] for k, v in by_round.items() if k in ref]
    if ratios and backend != sys.argv[2]:
        ahead = sum(x >= 1 for x in ratios)
        text += (f"  ÷ {sys.argv[2]}: median {statistics.median(ratios):.2f}, "
                 f"{min(ratios):.2f}-{max(ratios):.2f}, ahead in {ahead} of {len(ratios)}")
    print(text)
PY
