"""A stand-in worker for simulating thousands of ranks: no MindSpore, only the events.

Run by ``bench_scale`` as ``python -S benchmarks/_sim_worker.py`` through ``--worker-cmd`` (with
``--scheduler-cmd none``), so a rank costs one bare interpreter: ~10 MB and its start-up CPU.
The event lines are spelled here with string formatting (the format of ``wrn.contract``, checked
by the benchmark's tests) rather than through ``wrn.contract``, whose ``json`` import would
double each rank's start-up cost. It emits ``start``, ``SIM_STEPS`` ``step`` events
``SIM_STEP_S`` seconds apart (on a fixed schedule from its own start, so a slow launcher does
not stretch the job), then ``epoch_end`` and ``finish``.
"""

import os
import sys
import time


def event(kind: str, rank: int, fields: str) -> None:
    """Write one event line (``@wrn {json}``) and flush it."""
    sys.stdout.write(f'@wrn {{"v":1,"event":"{kind}","rank":{rank},"time":{time.time():.3f},'
                     f'{fields}}}\n')
    sys.stdout.flush()


def main() -> None:
    rank = int(os.environ.get("RANK_ID", "0"))
    world = int(os.environ.get("RANK_SIZE", "1"))
    steps = int(os.environ.get("SIM_STEPS", "10"))
    step_s = float(os.environ.get("SIM_STEP_S", "0.5"))
    event("start", rank, f'"world_size":{world},"model":"sim","params":1,"steps_per_epoch":{steps},'
                         f'"epochs":1,"batch_size":1,"device_target":"CPU","host":"sim",'
                         f'"pid":{os.getpid()}')
    t0 = time.monotonic()
    for step in range(1, steps + 1):
        time.sleep(max(0.0, t0 + step * step_s - time.monotonic()))
        event("step", rank, f'"epoch":1,"step":{step},"global_step":{step},"loss":{1.0 / step:.4f},'
                            f'"lr":0.1,"imgs_per_s":10.0,"data_wait_s":0.0')
    event("epoch_end", rank, f'"epoch":1,"loss":0.1,"seconds":{steps * step_s},"imgs_per_s":10.0')
    event("finish", rank, f'"status":"ok","checksum":"sim","seconds":{steps * step_s},"top1":null,'
                          f'"global_step":{steps}')


if __name__ == "__main__":
    main()
