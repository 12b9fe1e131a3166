#!/usr/bin/env bash
# Training on one device, as in MindSpore ModelZoo:
#
#   bash scripts/run_standalone_train.sh DATASET_PATH CONFIG_PATH [RESUME_CKPT]
#
# The device is DEVICE_ID (default 0) of DEVICE_TARGET (default Ascend; GPU or CPU also work).
# A thin wrapper over `wrn-launch --devices <DEVICE_ID>,`; its exit status is wrn-launch's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat >&2 <<USAGE
usage: bash $0 DATASET_PATH CONFIG_PATH [RESUME_CKPT]
  DATASET_PATH  dataset root holding train/ and test/
  CONFIG_PATH   training config YAML (e.g. configs/wrn50-2_config.yaml)
  RESUME_CKPT   optional checkpoint to continue from
environment: DEVICE_TARGET=Ascend|GPU|CPU (default Ascend), DEVICE_ID (default 0), PYTHON,
             WRN_LAUNCH_ARGS
USAGE
    exit 2
}
[ $# -eq 2 ] || [ $# -eq 3 ] || usage

TARGET="${DEVICE_TARGET:-Ascend}"
BACKEND="$(backend_for "$TARGET")" || exit 2
PY="$(find_python)" || exit 2
ARGS=(--devices "${DEVICE_ID:-0}," --backend "$BACKEND" --config "$(abs_path "$2")"
      --set "data_path=$(abs_path "$1")" --set "device_target=$(device_target_for "$BACKEND")")
if [ $# -eq 3 ]; then
    ARGS+=(--resume-ckpt "$(abs_path "$3")")
fi
read -r -a EXTRA <<< "${WRN_LAUNCH_ARGS:-}"
exec "$PY" -m launcher.cli "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
