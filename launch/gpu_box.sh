#!/usr/bin/env bash
# Train hybrid-jax on one GPU host (all its GPUs form the `data` mesh axis).
#
#   launch/gpu_box.sh --workdir=runs/hybrid -- --config=configs/default.py:model=xlm_roberta_base \
#       --config.model.dtype=bfloat16 --config.train.global_batch_size=512
#   launch/gpu_box.sh --workdir=... --install --dry-run    # print the commands only
#
# Re-running the same command resumes from the newest checkpoint in the workdir.
set -euo pipefail
WORKDIR="" DRY_RUN=0 INSTALL=0 MAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workdir=*) WORKDIR="${1#*=}" ;;
    --install) INSTALL=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) echo "gpu_box.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$WORKDIR" ]] || { echo "gpu_box.sh: --workdir is required" >&2; exit 2; }
[[ ${#MAIN_ARGS[@]} -gt 0 ]] || MAIN_ARGS=(--config=configs/default.py)
run() { printf '+'; printf ' %q' "$@"; printf '\n'; [[ $DRY_RUN == 1 ]] || "$@"; }
cd "$(dirname "$0")/.."
[[ $INSTALL == 1 ]] && run pip install -e ".[gcs]" "jax[cuda12]"
# Let XLA overlap collectives with compute; keep 10% of GPU memory for the host runtime.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
run python -m hybrid_jax.main --workdir="$WORKDIR" "${MAIN_ARGS[@]}"
