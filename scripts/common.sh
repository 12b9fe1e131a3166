# Shared by the run_*.sh wrappers (sourced, not run): find the project's Python, turn
# relative paths into absolute ones, and map DEVICE_TARGET to a backend.
#
#   PYTHON          interpreter to use (default: the repository's .venv/bin/python, else python3)
#   DEVICE_TARGET   Ascend (default), GPU or CPU
#   WRN_LAUNCH_ARGS extra wrn-launch flags, split on spaces (e.g. "--plain --name exp1")

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$SCRIPT_DIR")"
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"

find_python() {
    if [ -n "${PYTHON:-}" ]; then
        echo "$PYTHON"
    elif [ -x "$REPO_DIR/.venv/bin/python" ]; then
        echo "$REPO_DIR/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        echo python3
    else
        echo "error: no Python found: set PYTHON=/path/to/python, or run 'make venv' in $REPO_DIR" >&2
        return 1
    fi
}

# abs_path PATH: PATH made absolute against the current directory (need not exist yet);
# builtin:... data paths are left alone.
abs_path() {
    case "$1" in
        builtin:*|/*) echo "$1" ;;
        *) echo "$PWD/${1#./}" ;;
    esac
}

# backend_for TARGET: the wrn-launch --backend for a DEVICE_TARGET value.
backend_for() {
    case "$1" in
        Ascend|ascend) echo ascend ;;
        GPU|gpu) echo gpu ;;
        CPU|cpu) echo cpu ;;
        *) echo "error: DEVICE_TARGET=$1 is not one of Ascend, GPU, CPU" >&2; return 2 ;;
    esac
}

# device_target_for BACKEND: MindSpore's spelling (Ascend, GPU, CPU).
device_target_for() {
    case "$1" in ascend) echo Ascend ;; gpu) echo GPU ;; cpu) echo CPU ;; esac
}
