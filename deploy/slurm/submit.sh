#!/bin/bash
# Submits a sharded sweep as a Slurm array of SHARDS tasks and the merge job that runs once all
# of them succeeded. Usage:
#   RUN=/shared/results/run1 SHARDS=4 deploy/slurm/submit.sh --standard
# Extra arguments are sweep flags, passed to every task. THREADCENTER_BIN names the binary
# (default: threadcenter-bench on PATH); RUN must be on storage the nodes share.
set -euo pipefail
: "${RUN:?set RUN to a folder that every node and the merge job can reach}"
SHARDS=${SHARDS:-4}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUN"
array=$(sbatch --parsable --chdir="$RUN" --array="0-$((SHARDS - 1))" --export=ALL,RUN="$RUN" \
    "$here/sweep.sbatch" "$@")
array=${array%%;*}
merge=$(sbatch --parsable --chdir="$RUN" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --export=ALL,RUN="$RUN" "$here/merge.sbatch")
echo "sweep array: job $array ($SHARDS shards); merge: job ${merge%%;*}"
echo "report when done: $RUN/report.html"
