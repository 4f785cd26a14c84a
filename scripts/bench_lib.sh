# Shared by scripts/ping_vs_redis.sh and scripts/tiny_jobs.sh (sourced, not run).

# start_serve OUT COMMAND...: starts COMMAND (a `serve --port 0 ...`, maybe behind taskset) in
# the background with its output in OUT, and waits for its `listening on ADDR` line. Sets `srv`
# to its pid and `port` to the port it took.
start_serve() {
  local out=$1
  shift
  "$@" >"$out" 2>/dev/null &
  srv=$!
  for _ in $(seq 200); do grep -q '^listening on' "$out" && break; sleep 0.05; done
  port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out")
}

# round_order ROUND ITEM...: the items in their order on odd rounds and reversed on even ones,
# so that over an even number of rounds every item runs as often first as last, and a drift
# within a round (or an advantage of going first) falls on every item alike.
round_order() {
  local round=$1 i
  shift
  if [ $((round % 2)) = 1 ]; then
    echo "$@"
  else
    for ((i = $#; i >= 1; i--)); do printf '%s ' "${!i}"; done
    echo
  fi
}

# machine_ticks: the machine's idle and total CPU clock ticks so far, all cores (/proc/stat).
machine_ticks() {
  awk '/^cpu /{ print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# machine_ipis [FILE]: inter-processor interrupts so far, all cores: the rescheduling (RES)
# and function-call (CAL) ones, which is how the kernel wakes a task on another CPU, and
# what waking a halted virtual CPU costs a VM exit for (FILE: /proc/interrupts).
machine_ipis() {
  awk 'NR == 1 { n = NF }
    $1 == "RES:" || $1 == "CAL:" { for (i = 2; i <= n + 1; i++) s += $i }
    END { print s + 0 }' "${1:-/proc/interrupts}"
}

# machine_switches [FILE]: context switches so far, all cores (the `ctxt` row of /proc/stat,
# FILE): every time a CPU changed task, between threads of one process or across processes.
machine_switches() {
  awk '$1 == "ctxt" { print $2 }' "${1:-/proc/stat}"
}

# tree_ticks PID: CPU clock ticks (user + system) used so far by PID and its live
# descendants (a process pool's workers, prefork's children).
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
