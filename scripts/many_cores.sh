#!/usr/bin/env bash
# Issue 15's many-core target as one prepared run, for a machine lent for minutes: `fib` at
# 50 µs and 1 ms with one worker per core, every backend (`shm` and `prefork` included), into
# one run folder whose verdicts say whether `shm` ÷ best thread is `equivalent`.
#
#   scripts/many_cores.sh [BIN] [OUT]
#
# BIN defaults to target/release/threadcenter-bench (build it where the toolchain is and carry
# it: the run needs nothing else, not even python3); OUT defaults to
# results/<date>-<cores>c-shm-many. REPEAT (default 30) sets the repetitions, WORKERS (default:
# every core this process may use) the pool size. The default grid is 300 cells; at 2 cores
# a cell takes about 0.6 s, and if one takes a second at 16 cores (sixteen workers to start
# per cell) the run is 5–6 minutes, an estimate no 16-core machine has checked yet. The
# script prints the sweep's own time at the end. Plots are drawn afterwards, where Python's
# packages are: python3 scripts/plot_all.py OUT/results.csv --out OUT/plots.
set -euo pipefail
BIN=${1:-target/release/threadcenter-bench}
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
cores=$(nproc)
WORKERS=${WORKERS:-$cores}
REPEAT=${REPEAT:-30}
OUT=${2:-results/$(date -u +%F)-${cores}c-shm-many}
echo "$cores cores, $WORKERS workers, $REPEAT repetitions, into $OUT"
start=$(date +%s)
"$BIN" sweep --quick --backends process,shm,rayon,tokio,prefork --kernels fib \
  --sizes 50us,1ms --workers "$WORKERS" --repeat "$REPEAT" --equivalence 5 --out "$OUT" --exact
echo "sweep took $(($(date +%s) - start)) s"
