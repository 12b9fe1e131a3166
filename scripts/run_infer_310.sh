#!/usr/bin/env bash
# Inference of an exported MINDIR on a labelled split, with MindSpore ModelZoo's signature:
#
#   bash scripts/run_infer_310.sh MINDIR_PATH DATASET DATA_PATH LABEL_FILE DEVICE_ID
#
# ModelZoo compiles a C++ program against the Ascend 310 inference runtime; here
# `wrn-launch predict` scores the images with MindSpore's own loader (mindspore.load +
# nn.GraphCell) on what this host has (DEVICE_TARGET=Ascend|CPU; unset: Ascend when present,
# else CPU), with the preprocessing of evaluation. As ModelZoo's script does, it writes into the
# current directory:
#   infer.log          what the inference printed
#   infer_result.json  every image's top-5 classes and probabilities (ModelZoo: result_Files/)
#   acc.log            "Total data: N, top1 accuracy: X, top5 accuracy: Y."
# Exit status: 0, 2 bad arguments or input (the reason on stderr), else the failing step's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat >&2 <<USAGE
usage: bash $0 MINDIR_PATH DATASET DATA_PATH LABEL_FILE DEVICE_ID
  MINDIR_PATH  exported model (wrn-launch export CKPT --format MINDIR)
  DATASET      dataset name, e.g. rp2k or imagenet (shown only: every dataset is an image
               folder here, preprocessed as in evaluation)
  DATA_PATH    labelled split: DATA_PATH/<class>/<image>.jpg|.jpeg|.png
  LABEL_FILE   the run's classes.json (or a text file with one class name per line, or
               ModelZoo's imagenet_label.json)
  DEVICE_ID    device number (Ascend; ignored on CPU)
environment: DEVICE_TARGET=Ascend|CPU (default: Ascend when present, else CPU), PYTHON
writes infer.log, infer_result.json and acc.log into the current directory
USAGE
    exit 2
}
[ $# -eq 5 ] || usage
case "$5" in
    ''|*[!0-9]*) echo "error: DEVICE_ID '$5' is not a device number (0, 1, ...)" >&2; exit 2 ;;
esac
[ -n "$2" ] || { echo "error: DATASET is empty; pass the dataset's name, e.g. rp2k" >&2; exit 2; }

BACKEND=auto
if [ -n "${DEVICE_TARGET:-}" ]; then
    BACKEND="$(backend_for "$DEVICE_TARGET")" || exit 2
    if [ "$BACKEND" = gpu ]; then
        echo "error: DEVICE_TARGET=$DEVICE_TARGET: inference runs on Ascend or CPU (MindSpore 2.10 has no GPU build)" >&2
        exit 2
    fi
fi
PY="$(find_python)" || exit 2
MODEL="$(abs_path "$1")"
DATA="$(abs_path "$3")"
LABELS="$(abs_path "$4")"

echo "mindir: $MODEL"
echo "dataset: $2 ($DATA)"
echo "label file: $LABELS"
echo "device: $BACKEND, id $5"

status=0
"$PY" -m launcher.cli predict "$MODEL" "$DATA" --classes "$LABELS" --top-k 5 --backend "$BACKEND" \
    --device-id "$5" -o "$PWD/infer_result.json" > infer.log 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    tail -n 5 infer.log >&2
    echo "inference failed (exit status $status); its output is in $PWD/infer.log" >&2
    exit "$status"
fi
"$PY" -m wrn.predict accuracy infer_result.json > acc.log 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    cat acc.log >&2
    echo "calculating the accuracy failed (exit status $status)" >&2
    exit "$status"
fi
cat acc.log
