#!/usr/bin/env bash
# Evaluate a checkpoint on the test split, as in MindSpore ModelZoo:
#
#   bash scripts/run_eval.sh DATASET_PATH CHECKPOINT_PATH CONFIG_PATH
#
# Runs on DEVICE_ID (default 0) of DEVICE_TARGET (default Ascend; GPU or CPU also work) through
# `wrn-launch eval CHECKPOINT --devices <DEVICE_ID>,`: top-1, top-5, per-class accuracy and the
# most confused classes, written into the evaluation's run directory (RUN/eval/<time>/ for a
# checkpoint in RUN/checkpoints/). WRN_LAUNCH_ARGS adds flags (e.g. "--devices 8" for all
# eight devices, or "--run-dir DIR"); the exit status is wrn-launch's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat >&2 <<USAGE
usage: bash $0 DATASET_PATH CHECKPOINT_PATH CONFIG_PATH
  DATASET_PATH     dataset root holding test/ (and train/ unless the run's classes.json is found)
  CHECKPOINT_PATH  checkpoint to evaluate (e.g. RUN_DIR/checkpoints/<name>.ckpt)
  CONFIG_PATH      the training config (e.g. RUN_DIR/config.yaml)
environment: DEVICE_TARGET=Ascend|GPU|CPU (default Ascend), DEVICE_ID (default 0), PYTHON,
             WRN_LAUNCH_ARGS
USAGE
    exit 2
}
[ $# -eq 3 ] || usage

TARGET="${DEVICE_TARGET:-Ascend}"
BACKEND="$(backend_for "$TARGET")" || exit 2
PY="$(find_python)" || exit 2
ARGS=(eval "$(abs_path "$2")" --config "$(abs_path "$3")" --devices "${DEVICE_ID:-0},"
      --backend "$BACKEND" --set "data_path=$(abs_path "$1")"
      --set "device_target=$(device_target_for "$BACKEND")")
read -r -a EXTRA <<< "${WRN_LAUNCH_ARGS:-}"
exec "$PY" -m launcher.cli "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
