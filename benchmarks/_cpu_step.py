"""One configuration of the CPU fast-path benchmark, in a process of its own.

``python -m benchmarks._cpu_step '<json spec>'`` -- the environment under test is set by the
parent before this process starts (oneDNN and OpenMP read theirs when MindSpore loads). The
spec says what to set inside the process, and what to run:

* ``{"kind": "step", ...}``: a WRN-16-4 train step as the worker builds it, timed.
  Keys: ``mode`` ("graph"/"pynative"), ``runtime_threads`` (explicit ``runtime_num_threads``;
  absent: as ``wrn.dist.setup_mindspore`` does it, from ``WRN_NUM_THREADS``),
  ``inter_op_parallel_num``, ``dispatch_threads_num``, ``jit_level``, ``cpu_affinity``,
  ``warmup``, ``steps``, ``batch``.
* ``{"kind": "conv", "data_format": "NHWC"|"NCHW", ...}``: one 3x3 conv 64->64 forward and
  backward (input and weight gradients of sum(conv(x)^2)) on a batch of 32 at 64x32x32: does
  MindSpore's CPU conv take this layout, and how fast.

The answer is one line ``@cpu_step {json}`` on stdout (``{"error": ...}`` when it fails).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

TAG = "@cpu_step "


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(TAG + json.dumps(obj), flush=True)


def _setup(spec: dict[str, Any]) -> dict[str, Any]:
    """MindSpore set up as the worker does it, plus the settings the spec adds."""
    import mindspore as ms

    from wrn.dist import setup_mindspore, world_from_env

    info = setup_mindspore("CPU", spec.get("mode", "graph"), int(spec.get("seed", 1)), world_from_env())
    applied: dict[str, Any] = {}
    if spec.get("runtime_threads"):
        ms.set_context(runtime_num_threads=int(spec["runtime_threads"]))
        applied["runtime_num_threads"] = int(spec["runtime_threads"])
    if spec.get("inter_op_parallel_num") is not None:
        ms.set_context(inter_op_parallel_num=int(spec["inter_op_parallel_num"]))
        applied["inter_op_parallel_num"] = int(spec["inter_op_parallel_num"])
    if spec.get("dispatch_threads_num") is not None:
        ms.runtime.dispatch_threads_num(int(spec["dispatch_threads_num"]))
        applied["dispatch_threads_num"] = int(spec["dispatch_threads_num"])
    if spec.get("jit_level"):
        ms.set_context(jit_config={"jit_level": spec["jit_level"]})
        applied["jit_level"] = spec["jit_level"]
    if spec.get("cpu_affinity"):
        ms.runtime.set_cpu_affinity(True)
        applied["cpu_affinity"] = True
    applied["world_size"] = info.world_size
    return applied


def _timed(fn, warmup: int, steps: int) -> tuple[list[float], list[float], list[float], float]:
    """Warm-up and timed calls of ``fn`` (each synchronised by ``fn`` itself); also the
    process CPU time (all threads) per timed call."""
    warm, timed, values = [], [], []
    cpu = 0.0
    for i in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        dt = time.perf_counter() - t0
        if i >= warmup:
            cpu += time.process_time() - c0
        (warm if i < warmup else timed).append(dt)
        values.append(value)
    return warm, timed, values, cpu / max(steps, 1)


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    applied = _setup(spec)

    import mindspore as ms
    import numpy as np

    from wrn.config import load_config
    from wrn.lr import lr_schedule
    from wrn.models import build_model
    from wrn.steps import amp_level_for, make_loss, make_optimizer, make_train_step

    batch = int(spec.get("batch", 32))
    cfg = load_config(None, ["model=wrn16_4", "num_classes=10", "image_size=32", "dropout=0.0",
                             f"batch_size={batch}"])
    net = build_model(cfg.model, cfg.num_classes, cfg.image_size, cfg.dropout)
    lr = lr_schedule(cfg.lr_schedule, cfg.lr, 100, cfg.epoch_size, warmup_epochs=cfg.warmup_epochs,
                     lr_end=cfg.lr_end, decay_epochs=cfg.lr_decay_epochs,
                     decay_factor=cfg.lr_decay_factor)
    amp = amp_level_for(cfg, "CPU")
    optimizer = make_optimizer(net, cfg, lr, loss_scale=cfg.loss_scale if amp != "O0" else 1.0)
    step_cell = make_train_step(net, make_loss(cfg.label_smoothing), optimizer, amp, cfg.loss_scale)

    rng = np.random.default_rng(0)
    images = ms.Tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, cfg.num_classes, batch).astype(np.int32))
    built = time.perf_counter() - t0

    warm, timed, losses, cpu = _timed(lambda: float(step_cell(images, labels).asnumpy()),
                                      int(spec.get("warmup", 3)), int(spec.get("steps", 10)))
    return {"step_s": timed, "warmup_s": warm, "losses": [round(x, 6) for x in losses],
            "cpu_s_per_step": cpu, "setup_s": built, "applied": applied, "amp_level": amp}


def run_conv(spec: dict[str, Any]) -> dict[str, Any]:
    applied = _setup(spec)

    import mindspore as ms
    import numpy as np
    from mindspore import nn

    fmt = spec.get("data_format", "NCHW")
    conv = nn.Conv2d(64, 64, 3, pad_mode="same", has_bias=False, data_format=fmt)
    shape = (32, 32, 32, 64) if fmt == "NHWC" else (32, 64, 32, 32)
    x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    def forward(inp):
        y = conv(inp)
        return (y * y).sum()

    grad = ms.grad(forward, grad_position=0, weights=conv.trainable_params())

    def once():
        dx, dw = grad(x)
        dx.asnumpy()
        dw[0].asnumpy()

    out_shape = list(conv(x).shape)
    warm, timed, _, cpu = _timed(once, int(spec.get("warmup", 2)), int(spec.get("steps", 5)))
    return {"step_s": timed, "warmup_s": warm, "cpu_s_per_step": cpu, "out_shape": out_shape,
            "applied": applied}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0]) if argv else {"kind": "step"}
    from wrn.dist import prepare_process_env

    before = {k: os.environ.get(k) for k in ("ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "GLOG_v")}
    changed = prepare_process_env()
    try:
        result = (run_conv if spec.get("kind") == "conv" else run_step)(spec)
    except Exception as exc:  # the parent records the failure for this configuration
        traceback.print_exc()
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        _answer({"error": text[:600], "prepare_changed": changed})
        return 1
    result["prepare_changed"] = changed
    result["env_before_prepare"] = before
    _answer(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
