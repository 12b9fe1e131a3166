"""A stand-in worker for simulating thousands of ranks: no MindSpore, only the events.

Run by ``bench_scale`` as ``python -S benchmarks/_sim_worker.py`` through ``--worker-cmd`` (with
``--scheduler-cmd none``), so each rank costs one small interpreter (~10 MB). It emits the real
event format (``wrn.events``): ``start``, ``SIM_STEPS`` ``step`` events ``SIM_STEP_S`` seconds
apart (on a fixed schedule from its start, so a slow launcher does not stretch the job), then
``epoch_end`` and ``finish``.
"""

import os
import time

from wrn.events import emit


def main() -> None:
    rank = int(os.environ.get("RANK_ID", "0"))
    world = int(os.environ.get("RANK_SIZE", "1"))
    steps = int(os.environ.get("SIM_STEPS", "10"))
    step_s = float(os.environ.get("SIM_STEP_S", "0.5"))
    emit("start", rank, world_size=world, model="sim", params=1, steps_per_epoch=steps, epochs=1,
         batch_size=1, device_target="CPU", host="sim", pid=os.getpid())
    t0 = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(max(0.0, t0 + step * step_s - time.monotonic()))
        emit("step", rank, epoch=1, step=step, global_step=step, loss=1.0 / step, lr=0.1,
             imgs_per_s=10.0, data_wait_s=0.0)
    emit("epoch_end", rank, epoch=1, loss=0.1, seconds=steps * step_s, imgs_per_s=10.0)
    emit("finish", rank, status="ok", checksum="sim", seconds=steps * step_s, top1=None,
         global_step=steps)


if __name__ == "__main__":
    main()
