"""RP2K reader: sharding, pipelines.

The data path checks and the layout on disk are in ``wrn.datapath``, the class index in
``wrn.classindex``, the image file checks in ``wrn.images``, the file scan in ``wrn.scan``,
``Split`` and ``scan_split`` in ``wrn.splits``.

Sharding for data parallel training (``shard_indices``): every epoch all ranks draw the same
permutation of the whole split from ``(seed, epoch)`` and rank ``r`` of ``w`` takes
``perm[r::w]``; every rank then trains exactly ``steps_per_epoch * batch_size`` samples, so
the step count is identical on all ranks (an unequal count would hang the gradient
allreduce). The few samples beyond that are left out for that epoch only.

Import cost: this module imports only numpy at the top. MindSpore is imported inside
``train_dataset`` and ``eval_dataset``; the launcher can call ``check_data_path``,
``scan_split`` and ``shard_indices`` without it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from wrn.classindex import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    _validated_classes,
    build_class_index,
    load_class_index,
    save_class_index,
)
from wrn.config import BUILTIN_DATA  # noqa: F401 (launcher.prepare imports it from here)
from wrn.datapath import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    _HOW_TO_FIX,
    IMAGE_EXTENSIONS,
    DataError,
    _check_names_utf8,
    _is_hidden,
    _is_utf8,
    check_data_path,
    count_images,
    resolve_data_path,
)
from wrn.images import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    MIN_IMAGE_BYTES,
    TAIL_BYTES,
    _quick_check_folder,
    check_image_full,
    check_image_quick,
)
from wrn.scan import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    POOL_MIN_FOLDERS,
    VERIFY_MODES,
    ListingJob,
    SplitListing,
    _scan_folder,
    list_split,
    scan_workers,
)
from wrn.splits import Split, scan_split  # noqa: F401 (moved there; importers of wrn.data still get them)

#: ImageNet channel statistics, scaled to 0..255 pixels (the inputs are uint8 images).
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: Eval resizes the shorter side to ``round(image_size / EVAL_CROP_FRACTION)``, then centre crops.
EVAL_CROP_FRACTION = 0.875


# --------------------------------------------------------------------------- sharding


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


# --------------------------------------------------------------------------- pipelines


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

    def __deepcopy__(self, memo) -> "TrainSource":
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

    def __deepcopy__(self, memo) -> "EvalSource":
        return self

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in self.indices:
            yield np.fromfile(self.files[i], dtype=np.uint8), np.array(self.labels[i], dtype=np.int32)
        if self.num_pad:
            pad = np.fromfile(self.pad_file, dtype=np.uint8)
            for _ in range(self.num_pad):
                yield pad, np.array(-1, dtype=np.int32)


def usable_workers(num_workers: int) -> int:
    """``num_workers`` capped to the CPU count: MindSpore refuses ``num_parallel_workers``
    above ``multiprocessing.cpu_count()`` with a ValueError, so a config written for a big host
    (e.g. ``num_parallel_workers: 8``) still runs on a small one."""
    import multiprocessing

    return max(1, min(int(num_workers), multiprocessing.cpu_count()))


def _configure_pipeline(seed: int | None) -> None:
    import mindspore.dataset as ds

    # REPLACE: a sample whose decode fails is replaced by a cached good one, so every rank
    # still yields the same number of batches (SKIP would not, and would hang the allreduce).
    ds.config.set_error_samples_mode(ds.config.ErrorSamplesMode.REPLACE)
    if seed is not None:
        ds.config.set_seed(seed)


def augmentation_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed given to ``mindspore.dataset.config.set_seed`` for ``rank``'s train pipeline
    whose first pass is ``epoch`` (0-based, as ``start_epoch``).

    Mixed from (seed, rank, epoch) so ranks draw different crops and every epoch's pipeline a
    new stream; stable across runs and restarts. The mix (``seed * 100003 + epoch + 1``, then
    the rank) is the one earlier versions used, so a run they started resumes exactly.
    """
    mixed = int(seed) * 100003 + int(epoch) + 1
    return int(np.random.SeedSequence([mixed, int(rank), 0x5EED]).generate_state(1)[0])


def train_dataset(split: Split, *, rank: int, world: int, batch_size: int, image_size: int, seed: int,
                  num_workers: int, crop_min_scale: float = 0.08, start_epoch: int = 0,
                  skip_steps: int = 0, replay_skipped: bool = False):
    """Training pipeline for one rank; returns ``(dataset, steps_per_epoch)``.

    Rows: ``TrainSource`` (this rank's share of a fresh permutation each epoch, exactly
    ``steps_per_epoch * batch_size`` samples), then C++ ops on ``num_workers`` threads:
    ``RandomCropDecodeResize(image_size, scale=(crop_min_scale, 1))`` (decode fused with the
    random resized crop), ``RandomHorizontalFlip``, ``Normalize`` (ImageNet mean/std),
    ``HWC2CHW``, label ``TypeCast`` to int32, then ``batch(batch_size, drop_remainder=True)``.
    ``num_workers`` is capped to the CPU count (``usable_workers``).
    Batches are ``(float32 [B, 3, S, S], int32 [B])``.

    Iterate it for many epochs with ``create_tuple_iterator(num_epochs=E)`` (or one new
    iterator per epoch): every pass starts the next epoch's permutation. ``start_epoch`` and
    ``skip_steps`` resume mid-run: the first pass is epoch ``start_epoch`` with its first
    ``skip_steps`` batches left out, so it has ``steps_per_epoch - skip_steps`` batches.
    ``get_dataset_size()`` reports ``steps_per_epoch``. ``dataset.wrn_source`` is the
    ``TrainSource`` (its ``epoch_indices`` give the exact files of any epoch).

    How the batches are left out: by default at the source, so their files are neither read
    nor decoded, but the random crops of the rest of the pass then differ from the ones an
    uninterrupted pass draws (the random stream starts at the first batch kept).
    ``replay_skipped=True`` keeps them exact instead: the skipped batches still go through
    decoding and augmentation inside the pipeline and are dropped there (MindSpore's
    ``set_init_step`` with fast recovery off, which this sets process-wide), never reaching
    Python. No way was found to have both: MindSpore's own fast recovery (skip before the map)
    gave every remaining batch other crops when measured, and ``RandomCropDecodeResize`` draws
    crop boxes until one fits the image (up to its ``max_attempts``), so how far the stream
    advances per image depends on the image and cannot be skipped without it. With replay,
    the skip applies to every iterator created from this dataset; build one dataset per
    resumed epoch (as ``wrn.train`` does).

    Reproducibility: which files each rank reads, in which order, depends only on
    (seed, epoch, rank, world, the split) and is exact, also across a resume. The random crops
    and flips come from MindSpore's process-wide dataset seed, set here (and only here) to
    ``augmentation_seed(seed, rank, start_epoch)``. MindSpore reads that seed when an iterator
    is created, and ``mindspore.set_seed()`` overwrites it: call ``mindspore.set_seed`` before
    this function and create the iterator right after it. One iterator with
    ``num_epochs=E`` draws one stream for all E passes (a new iterator restarts it), so for
    crops that do not depend on where a run was restarted, build one dataset per epoch. A
    fresh process with the same arguments repeats the crops bit for bit (checked with 1 and
    2 workers; MindSpore does not promise it for several workers).

    This also sets the process-wide error mode to REPLACE: an image that passed the scan but
    fails to decode is replaced by another sample of the pipeline, keeping the batch count
    equal on all ranks (SKIP would make it unequal and hang the allreduce).
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T
    import mindspore.dataset.vision as V

    if batch_size < 1 or image_size < 1 or num_workers < 1 or not 0 < crop_min_scale <= 1:
        raise ValueError("train_dataset: batch_size, image_size, num_workers must be >= 1 and "
                         "crop_min_scale in (0, 1]")
    source = TrainSource(split, rank=rank, world=world, batch_size=batch_size, seed=seed,
                         start_epoch=start_epoch, skip_steps=0 if replay_skipped else skip_steps)
    _check_skip(skip_steps, source.steps)
    _configure_pipeline(augmentation_seed(seed, rank, start_epoch))
    data = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=1, python_multiprocessing=False)
    image_ops = [
        V.RandomCropDecodeResize(image_size, scale=(crop_min_scale, 1.0)),
        V.RandomHorizontalFlip(),
        V.Normalize(mean=list(MEAN), std=list(STD)),
        V.HWC2CHW(),
    ]
    data = data.map(operations=image_ops, input_columns=["image"],
                    num_parallel_workers=usable_workers(num_workers))
    data = data.map(operations=T.TypeCast(ms.int32), input_columns=["label"])
    data = data.batch(batch_size, drop_remainder=True)
    data.dataset_size = source.steps  # the source has no __len__; this stops a counting pass
    if replay_skipped and skip_steps:
        ds.config.set_fast_recovery(False)  # replay the skipped rows through the random ops
        data.set_init_step(skip_steps)
    data.wrn_source = source
    return data, source.steps


def eval_dataset(split: Split, *, rank: int, world: int, batch_size: int, image_size: int, num_workers: int):
    """Evaluation pipeline for one rank; returns ``(dataset, num_real_samples)``.

    No shuffling: rank ``r`` reads ``range(n)[r::world]``, so the ranks' shares are disjoint
    and cover the split exactly once. Images are decoded, resized (shorter side to
    ``round(image_size / 0.875)``), centre cropped to ``image_size``, normalized and made
    CHW. The last batch is padded to ``batch_size`` with rows labelled -1; count only rows with
    label >= 0. Ranks may get different numbers of batches (a rank whose share is empty gets
    one batch of padding). Batches are ``(float32 [B, 3, S, S], int32 [B])``; the dataset can
    be iterated any number of times; ``dataset.wrn_source`` is the ``EvalSource``.

    The process-wide error mode is set to REPLACE (see ``train_dataset``); a file that passes
    the scan but fails to decode would be replaced by another row, so scan with
    ``verify="full"`` when the count must be exact even for such files.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T
    import mindspore.dataset.vision as V

    if batch_size < 1 or image_size < 1 or num_workers < 1:
        raise ValueError("eval_dataset: batch_size, image_size and num_workers must be >= 1")
    source = EvalSource(split, rank=rank, world=world, batch_size=batch_size)
    _configure_pipeline(None)
    data = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=1, python_multiprocessing=False)
    image_ops = [
        V.Decode(),
        V.Resize(int(round(image_size / EVAL_CROP_FRACTION))),
        V.CenterCrop(image_size),
        V.Normalize(mean=list(MEAN), std=list(STD)),
        V.HWC2CHW(),
    ]
    data = data.map(operations=image_ops, input_columns=["image"],
                    num_parallel_workers=usable_workers(num_workers))
    data = data.map(operations=T.TypeCast(ms.int32), input_columns=["label"])
    data = data.batch(batch_size, drop_remainder=False)
    data.wrn_source = source
    return data, source.num_real
