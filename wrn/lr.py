"""Learning-rate schedules, computed per optimizer step as a plain array.

The optimizer receives the whole array and indexes it with its own ``global_step`` counter,
which is saved in every checkpoint: a resumed run continues the schedule where it stopped
instead of restarting the warm-up (a known flaw of the ModelZoo scripts, whose LR was constant).
"""

from __future__ import annotations

import math

import numpy as np


def lr_schedule(kind: str, base_lr: float, steps_per_epoch: int, epochs: int, *,
                warmup_epochs: float = 0.0, lr_end: float = 0.0,
                decay_epochs: list[int] | tuple[int, ...] = (), decay_factor: float = 0.1) -> np.ndarray:
    """Return float32 LR values for every step of ``epochs`` epochs.

    ``kind``: ``cosine`` (half cosine from ``base_lr`` to ``lr_end`` after the warm-up),
    ``step`` (multiply by ``decay_factor`` after each epoch in ``decay_epochs``) or
    ``constant``. A linear warm-up from ``base_lr / warmup_steps`` up to ``base_lr`` covers the
    first ``warmup_epochs`` (fractions allowed) in every kind.
    """
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError("steps_per_epoch and epochs must be positive")
    total = steps_per_epoch * epochs
    warmup = min(total, int(round(warmup_epochs * steps_per_epoch)))
    steps = np.arange(total, dtype=np.float64)
    if kind == "cosine":
        span = max(1, total - warmup)
        progress = np.clip((steps - warmup) / span, 0.0, 1.0)
        lr = lr_end + 0.5 * (base_lr - lr_end) * (1.0 + np.cos(math.pi * progress))
    elif kind == "step":
        epoch_of_step = steps // steps_per_epoch
        drops = np.zeros(total)
        for boundary in sorted(decay_epochs):
            drops += epoch_of_step >= boundary
        lr = base_lr * np.power(decay_factor, drops)
    elif kind == "constant":
        lr = np.full(total, base_lr)
    else:
        raise ValueError(f"unknown lr_schedule {kind!r}")
    if warmup > 0:
        lr[:warmup] = base_lr * (steps[:warmup] + 1) / warmup
    return lr.astype(np.float32)
