#!/usr/bin/env bash
# Distributed training from an HCCL rank table, as in MindSpore ModelZoo:
#
#   bash scripts/run_distribute_train.sh RANK_TABLE_FILE DATASET_PATH CONFIG_PATH [RESUME_CKPT]
#
# Run it on every server of the table: each starts its own ranks (found by its IP in the
# table). DEVICE_TARGET=CPU (or GPU) runs the same table on CPU with the same world size.
# On Ascend the workers start from the table alone, as the ModelZoo scripts always have
# (ASCEND_STARTUP=dynamic starts them as a dynamic cluster that also hands HCCL the table).
# A thin wrapper over `wrn-launch --rank-table`; its exit status is wrn-launch's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat >&2 <<USAGE
usage: bash $0 RANK_TABLE_FILE DATASET_PATH CONFIG_PATH [RESUME_CKPT]
  RANK_TABLE_FILE  HCCL rank table (wrn-launch ranktable --devices 0-7 writes one)
  DATASET_PATH     dataset root holding train/ and test/
  CONFIG_PATH      training config YAML (e.g. configs/wrn50-2_config.yaml)
  RESUME_CKPT      optional checkpoint to continue from
environment: DEVICE_TARGET=Ascend|GPU|CPU (default Ascend), PYTHON, WRN_LAUNCH_ARGS,
  ASCEND_STARTUP=ranktable|dynamic (default ranktable)
USAGE
    exit 2
}
[ $# -eq 3 ] || [ $# -eq 4 ] || usage

TARGET="${DEVICE_TARGET:-Ascend}"
BACKEND="$(backend_for "$TARGET")" || exit 2
PY="$(find_python)" || exit 2
ARGS=(--rank-table "$(abs_path "$1")" --backend "$BACKEND" --config "$(abs_path "$3")"
      --set "data_path=$(abs_path "$2")" --set "device_target=$(device_target_for "$BACKEND")")
if [ "$BACKEND" = ascend ]; then
    ARGS+=(--ascend-startup "${ASCEND_STARTUP:-ranktable}")
fi
if [ $# -eq 4 ]; then
    ARGS+=(--resume-ckpt "$(abs_path "$4")")
fi
read -r -a EXTRA <<< "${WRN_LAUNCH_ARGS:-}"
exec "$PY" -m launcher.cli "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
