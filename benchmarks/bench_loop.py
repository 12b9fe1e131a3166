"""Loop overhead: our worker's steady-state step time against a bare ``Model.train`` loop.

Both run as one standalone CPU process on the default config (WRN-10-2, 32 px, batch 32, the
generated sample data, the same input pipeline, loss and optimizer; see
``benchmarks/_bare_train.py``). A step time is an epoch's wall time divided by its steps, as
each side times it (our ``epoch_end`` event, a ``Model.train`` callback); the first epoch
(graph compilation) is left out, and one run's sample is the mean over the later epochs. Our
time therefore includes everything the worker does per epoch (a fresh pipeline for the
epoch's seed, event lines, loss bookkeeping).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks import common
from benchmarks.common import log


def ours(cfg: Path, out: Path) -> float:
    ends = [e for e in common.run_worker(cfg, out) if e["event"] == "epoch_end"]
    return statistics.mean(e["seconds"] / e["steps"] for e in ends[1:])


def bare(cfg: Path) -> float:
    r = common.run_bare(cfg)
    return statistics.mean(s / n for s, n in zip(r["epoch_seconds"][1:], r["steps"][1:]))


def main() -> None:
    args = common.arg_parser(__doc__.split("\n")[0]).parse_args()
    common.sample_data()
    epochs = 2 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-loop-", dir=common.bench_tmp()) as tmp:
        tmp = Path(tmp)
        cfg = common.write_config(tmp / "cfg.yaml", epoch_size=epochs, log_interval=10,
                                  eval_interval=0, save_checkpoint_epochs=100,
                                  ckpt_path=str(tmp / "ckpt"))
        a, b = [], []
        for i in range(args.runs):
            for side in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
                if side == "ours":
                    a.append(ours(cfg, tmp / f"out-{i}"))
                else:
                    b.append(bare(cfg))
            log(f"run {i + 1}/{args.runs}: ours {a[-1] * 1000:.1f} ms/step, Model.train {b[-1] * 1000:.1f} ms/step")
    common.emit("loop", [common.compare("steady_state_step_time", a, b, unit="s/step", target="<= 1.03",
                                        peer_name="bare Model.train(dataset_sink_mode=False)")],
                model="wrn10_2", image_size=32, batch_size=32, epochs=epochs, measured_epochs=epochs - 1)


if __name__ == "__main__":
    main()
