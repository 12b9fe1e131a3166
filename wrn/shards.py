"""Which samples each rank reads: the shards of a split, and the sources that yield them.

Sharding for data parallel training (``shard_indices``): every epoch all ranks draw the same
permutation of the whole split from ``(seed, epoch)`` and rank ``r`` of ``w`` takes
``perm[r::w]``; every rank then trains exactly ``steps_per_epoch * batch_size`` samples, so
the step count is identical on all ranks (an unequal count would hang the gradient
allreduce). The few samples beyond that are left out for that epoch only.

``TrainSource`` and ``EvalSource`` yield one rank's encoded images and labels to the
pipelines of ``wrn.pipeline``.

Import cost: numpy; MindSpore is not needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from wrn.splits import Split


def shard_indices(n: int, world: int, rank: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Sample indices of rank ``rank`` (of ``world``) for ``epoch``: ``perm[rank::world]``.

    ``perm`` is a permutation of ``range(n)`` drawn from a numpy Generator seeded with
    ``(seed, epoch)`` (or ``range(n)`` itself when ``shuffle`` is false), identical on every
    rank, so the shards are disjoint and together cover all ``n``. Shard lengths differ by at
    most one; use ``steps_per_epoch`` to get a count that is equal everywhere.
    """
    for name, value in (("n", n), ("seed", seed), ("epoch", epoch)):
        if int(value) != value or value < 0:
            raise ValueError(f"shard_indices: {name} must be an integer >= 0; got {value!r}")
    if int(world) != world or world < 1 or int(rank) != rank or not 0 <= rank < world:
        raise ValueError(f"shard_indices: need 0 <= rank < world; got rank={rank!r}, world={world!r}")
    if shuffle:
        perm = np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))
    else:
        perm = np.arange(int(n))
    return perm[int(rank)::int(world)].astype(np.int64)


def steps_per_epoch(n: int, world: int, batch: int) -> int:
    """Training steps per epoch, the same on every rank: ``(n // world) // batch``.

    Raises ``ValueError`` if that is 0 (fewer than ``world * batch`` samples).
    """
    if world < 1 or batch < 1:
        raise ValueError(f"steps_per_epoch: world and batch must be >= 1; got world={world}, batch={batch}")
    steps = (n // world) // batch
    if steps == 0:
        raise ValueError(f"the training split has {n} images, fewer than world size x batch size = "
                         f"{world} x {batch} = {world * batch}, so no full step fits in an epoch; "
                         f"lower batch_size or use more data")
    return steps


def _check_skip(skip_steps: int, steps: int) -> None:
    if not 0 <= skip_steps < steps:
        raise ValueError(f"skip_steps must be in 0..{steps - 1} (steps per epoch); got {skip_steps}")


class TrainSource:
    """Iterable source for ``GeneratorDataset``: one rank's samples, a new shard every epoch.

    Each pass yields ``(encoded image bytes as uint8 array, 0-d int32 label)`` for the first
    ``samples_per_epoch = steps * batch_size`` indices of ``shard_indices(..., epoch)``. The
    epoch of a pass is ``start_epoch`` plus the number of passes *completed* so far; a pass
    counts as completed when its last sample is handed out. This matters because MindSpore
    starts and abandons extra passes when asked for ``output_shapes()``/``output_types()``;
    counting only completed passes keeps those probes from shifting the epoch. Until the first
    pass has completed, passes leave out the first ``skip_steps * batch_size`` samples
    (mid-epoch resume).

    There is deliberately no ``__len__``: MindSpore checks every pass against it and fails a
    shorter one, which the resumed first epoch is. ``train_dataset`` sets the dataset size
    itself. Copying returns the same object (MindSpore deep-copies pipelines when it builds an
    iterator; the pass counter must stay shared).
    """

    def __init__(self, split: Split, *, rank: int, world: int, batch_size: int, seed: int,
                 start_epoch: int = 0, skip_steps: int = 0) -> None:
        if start_epoch < 0:
            raise ValueError(f"start_epoch must be >= 0; got {start_epoch}")
        self.files = split.files
        self.labels = split.labels
        self.rank, self.world, self.batch_size, self.seed = rank, world, batch_size, seed
        self.steps = steps_per_epoch(len(split), world, batch_size)
        _check_skip(skip_steps, self.steps)
        self.samples_per_epoch = self.steps * batch_size
        self.start_epoch = start_epoch
        self.skip_steps = skip_steps
        self.started = 0  # passes begun, including abandoned probes (diagnostics)
        self.completed = 0

    def __deepcopy__(self, memo) -> TrainSource:
        return self

    def epoch_indices(self, epoch: int, first: bool = False) -> np.ndarray:
        """The split indices this rank reads in ``epoch`` (``first``: apply ``skip_steps``)."""
        idx = shard_indices(len(self.files), self.world, self.rank, self.seed, epoch)[: self.samples_per_epoch]
        return idx[self.skip_steps * self.batch_size:] if first else idx

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.started += 1
        first = self.completed == 0
        idx = self.epoch_indices(self.start_epoch + self.completed, first=first)
        last = len(idx) - 1
        for k, i in enumerate(idx):
            item = (np.fromfile(self.files[i], dtype=np.uint8), np.array(self.labels[i], dtype=np.int32))
            if k == last:
                self.completed += 1
            yield item


class EvalSource:
    """Iterable source for evaluation: one rank's share ``range(n)[rank::world]`` in order,
    padded to a whole number of batches with rows labelled -1 (they reuse a real file)."""

    def __init__(self, split: Split, *, rank: int, world: int, batch_size: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world; got rank={rank}, world={world}")
        self.files = split.files
        self.labels = split.labels
        self.indices = np.arange(len(split))[rank::world]
        self.num_real = len(self.indices)
        # an empty share still yields one batch of padding so every rank has a pipeline to run
        self.num_pad = (-self.num_real) % batch_size if self.num_real else batch_size
        self.pad_file = self.files[self.indices[0]] if self.num_real else self.files[0]

    def __len__(self) -> int:
        return self.num_real + self.num_pad

    def __deepcopy__(self, memo) -> EvalSource:
        return self

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in self.indices:
            yield np.fromfile(self.files[i], dtype=np.uint8), np.array(self.labels[i], dtype=np.int32)
        if self.num_pad:
            pad = np.fromfile(self.pad_file, dtype=np.uint8)
            for _ in range(self.num_pad):
                yield pad, np.array(-1, dtype=np.int32)
