"""The peer of our worker: a bare ``Model.train`` loop on the same network, data and batch.

``python -m benchmarks._bare_train --config FILE [--epochs N]`` builds exactly what the worker
builds (model, input pipeline, loss, optimizer with its LR schedule, process environment), but
trains with MindSpore's own ``Model.train(dataset_sink_mode=False)`` and nothing else: no events,
no per-epoch pipeline, no checkpoints, no evaluation. It prints one JSON line: per-epoch
seconds and steps (timed by a callback) and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's epoch_size")
    args = parser.parse_args()

    from wrn.dist import prepare_process_env, resolve_device_target, setup_mindspore, thread_budget, world_from_env

    prepare_process_env()
    t0 = time.time()
    from wrn.classindex import build_class_index
    from wrn.config import load_config
    from wrn.datapath import resolve_data_path
    from wrn.pipeline import train_dataset
    from wrn.splits import scan_split

    cfg = load_config(args.config, [])
    epochs = args.epochs or cfg.epoch_size
    info = setup_mindspore(resolve_device_target(cfg.device_target), cfg.mode, cfg.seed, world_from_env())

    import mindspore as ms

    from wrn.lr import lr_schedule
    from wrn.models import build_model
    from wrn.steps import make_loss, make_optimizer

    root = resolve_data_path(cfg.data_path)
    classes = build_class_index(root)
    split = scan_split(root, "train", classes, verify=cfg.verify_images)
    workers = max(1, min(cfg.num_parallel_workers, thread_budget() or 64))
    dataset, steps = train_dataset(split, rank=0, world=1, batch_size=cfg.batch_size,
                                   image_size=cfg.image_size, seed=cfg.seed, num_workers=workers,
                                   crop_min_scale=cfg.crop_min_scale)
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, steps, epochs, warmup_epochs=cfg.warmup_epochs,
                     lr_end=cfg.lr_end, decay_epochs=cfg.lr_decay_epochs,
                     decay_factor=cfg.lr_decay_factor)
    model = ms.Model(net, loss_fn=make_loss(cfg.label_smoothing), optimizer=make_optimizer(net, cfg, lr))

    class Timer(ms.train.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.steps: list[int] = []
            self._t = 0.0
            self._step0 = 0

        def on_train_epoch_begin(self, run_context) -> None:
            self._t = time.perf_counter()
            self._step0 = run_context.original_args().cur_step_num

        def on_train_epoch_end(self, run_context) -> None:
            self.seconds.append(time.perf_counter() - self._t)
            self.steps.append(run_context.original_args().cur_step_num - self._step0)

    timer = Timer()
    setup = time.time() - t0
    model.train(epochs, dataset, callbacks=[timer], dataset_sink_mode=False)
    print(json.dumps({"epoch_seconds": timer.seconds, "steps": timer.steps, "setup_seconds": setup,
                      "rank": info.rank, "batch_size": cfg.batch_size,
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
          flush=True)


if __name__ == "__main__":
    main()
