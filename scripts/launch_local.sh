#!/usr/bin/env bash
# Launch N flaxfit processes on this machine as one jax.distributed job.
#
#   scripts/launch_local.sh 2 --model cnn1 --epochs 3 --out runs/dist
#
# Every process trains on every device of the job; process 0 writes the run
# directory and prints. On a real cluster run one process per host instead,
# with the same flags and, on each host:
#   --distributed --coordinator HOST0:PORT --num-processes N --process-id I
# (or export JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID; on
# SLURM, Open MPI or Cloud TPU, JAX finds them by itself: pass --distributed only).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: scripts/launch_local.sh N [flaxfit train flags...]}
shift
port=${PORT:-$((20000 + RANDOM % 20000))}
flaxfit=${FLAXFIT:-.venv/bin/flaxfit}
pids=()
for ((i = 0; i < n; i++)); do
  "$flaxfit" train "$@" --distributed --coordinator "127.0.0.1:$port" \
    --num-processes "$n" --process-id "$i" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
