#!/usr/bin/env bash
# Train hybrid-jax on a Cloud TPU VM or pod slice: create (or reuse) the TPU, ship this checkout to
# every worker, install, and run the same `python -m hybrid_jax.main` on all workers at once.
# Re-running the same command resumes from the newest checkpoint in the (GCS) workdir.
#
#   launch/tpu_vm.sh --name=hj-v4 --zone=us-central2-b --accelerator=v4-32 \
#       --workdir=gs://BUCKET/runs/hybrid -- --config=configs/default.py:mono_prob=0.5 \
#       --config.train.global_batch_size=4096
#   launch/tpu_vm.sh ... --dry-run        # print every command, run none
#
# Everything after `--` is passed to hybrid_jax.main. On a pod slice every worker runs the same
# command; main calls jax.distributed.initialize() (it detects the multi-worker TPU environment).
set -euo pipefail

NAME="" ZONE="" ACCELERATOR="v4-8" VERSION="tpu-ubuntu2204-base" PROJECT="" WORKDIR=""
SPOT=0 DRY_RUN=0 CREATE=1 REMOTE_DIR="hybrid-jax"
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
MAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) NAME="${1#*=}" ;;
    --zone=*) ZONE="${1#*=}" ;;
    --accelerator=*) ACCELERATOR="${1#*=}" ;;
    --version=*) VERSION="${1#*=}" ;;
    --project=*) PROJECT="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --spot) SPOT=1 ;;
    --no-create) CREATE=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage 0 ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) echo "tpu_vm.sh: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done
[[ -n "$NAME" && -n "$ZONE" && -n "$WORKDIR" ]] || { echo "tpu_vm.sh: --name, --zone and --workdir are required" >&2; usage 2; }
[[ "$WORKDIR" == gs://* ]] || echo "tpu_vm.sh: warning: workdir $WORKDIR is not on GCS; each worker will write its own local copy" >&2
[[ ${#MAIN_ARGS[@]} -gt 0 ]] || MAIN_ARGS=(--config=configs/default.py)

run() {  # print, then execute unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  [[ $DRY_RUN == 1 ]] || "$@"
}
GCLOUD=(gcloud compute tpus tpu-vm)
COMMON=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && COMMON+=(--project="$PROJECT")

# 1. Create the TPU unless it exists.
if [[ $DRY_RUN == 1 ]] || ! "${GCLOUD[@]}" describe "$NAME" "${COMMON[@]}" >/dev/null 2>&1; then
  if [[ $CREATE == 1 ]]; then
    CREATE_ARGS=(--accelerator-type="$ACCELERATOR" --version="$VERSION")
    [[ $SPOT == 1 ]] && CREATE_ARGS+=(--spot)
    run "${GCLOUD[@]}" create "$NAME" "${COMMON[@]}" "${CREATE_ARGS[@]}"
  fi
fi

# 2. Ship exactly the committed code (git archive of HEAD) to every worker.
ARCHIVE="${TMPDIR:-/tmp}/hybrid-jax-$(git rev-parse --short HEAD).tar.gz"
run git -C "$(dirname "$0")/.." archive --format=tar.gz --prefix="$REMOTE_DIR/" -o "$ARCHIVE" HEAD
run "${GCLOUD[@]}" scp "$ARCHIVE" "$NAME:~/hybrid-jax.tar.gz" "${COMMON[@]}" --worker=all
# 3. Install on every worker (idempotent), 4. run the same command on all of them.
REMOTE_SETUP="rm -rf $REMOTE_DIR && tar xzf hybrid-jax.tar.gz && cd $REMOTE_DIR && pip install -q -e '.[gcs]' 'jax[tpu]'"
run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command="$REMOTE_SETUP"
REMOTE_MAIN="cd $REMOTE_DIR && python3 -m hybrid_jax.main --workdir=$(printf '%q' "$WORKDIR")"
for a in "${MAIN_ARGS[@]}"; do REMOTE_MAIN+=" $(printf '%q' "$a")"; done
run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command="$REMOTE_MAIN"
