"""The dynamic-cluster scheduler process: ``python -m wrn.scheduler`` with MS_ROLE=MS_SCHED.

MindSpore's CPU/GPU data parallelism needs one scheduler process that the workers register
with (MS_SCHED_HOST:MS_SCHED_PORT). It does no training; ``init()`` returns or the process
ends when every worker has finished. ``python -m wrn.train`` does the same when it finds
MS_ROLE=MS_SCHED (that is how msrun starts it), so both launchers work.
"""

from __future__ import annotations

import os
import sys

from wrn.contract import MS_ROLE_ENV, ROLE_SCHEDULER


def run_scheduler() -> int:
    """Join the cluster as its scheduler and wait for the workers to finish."""
    from wrn.dist import prepare_process_env

    if os.environ.get(MS_ROLE_ENV) != ROLE_SCHEDULER:
        print("wrn.scheduler: MS_ROLE must be MS_SCHED (with MS_SCHED_HOST, MS_SCHED_PORT, "
              "MS_WORKER_NUM); it is started by wrn-launch or msrun, not by hand", file=sys.stderr)
        return 2
    prepare_process_env()
    import mindspore as ms
    from mindspore.communication import init

    ms.set_device("CPU")
    init()
    return 0


if __name__ == "__main__":
    sys.exit(run_scheduler())
