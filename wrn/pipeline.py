"""The MindSpore pipelines: decoding, augmentation and batching for training and evaluation.

``train_dataset`` and ``eval_dataset`` read one rank's share of a ``Split`` through the sources
of ``wrn.shards`` and decode, crop, normalize and batch it with MindSpore's C++ ops;
``eval_image_ops`` is evaluation's list of those ops, which ``wrn.predict`` runs too.

Import cost: this module imports only numpy at the top. MindSpore is imported inside
``train_dataset``, ``eval_dataset`` and ``eval_image_ops``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from wrn.shards import EvalSource, TrainSource, _check_skip
from wrn.splits import Split

#: ImageNet channel statistics, scaled to 0..255 pixels (the inputs are uint8 images).
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: Eval resizes the shorter side to ``round(image_size / EVAL_CROP_FRACTION)``, then centre crops.
EVAL_CROP_FRACTION = 0.875


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
    import mindspore.dataset as ds
    import mindspore.dataset.vision as V

    if batch_size < 1 or image_size < 1 or num_workers < 1 or not 0 < crop_min_scale <= 1:
        raise ValueError("train_dataset: batch_size, image_size, num_workers must be >= 1 and "
                         "crop_min_scale in (0, 1]")
    source = TrainSource(split, rank=rank, world=world, batch_size=batch_size, seed=seed,
                         start_epoch=start_epoch, skip_steps=0 if replay_skipped else skip_steps)
    _check_skip(skip_steps, source.steps)
    _configure_pipeline(augmentation_seed(seed, rank, start_epoch))
    data = _batches(source, lambda: [
        V.RandomCropDecodeResize(image_size, scale=(crop_min_scale, 1.0)),
        V.RandomHorizontalFlip(),
        V.Normalize(mean=list(MEAN), std=list(STD)),
        V.HWC2CHW(),
    ], num_workers, batch_size, drop_remainder=True)
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
    if batch_size < 1 or image_size < 1 or num_workers < 1:
        raise ValueError("eval_dataset: batch_size, image_size and num_workers must be >= 1")
    source = EvalSource(split, rank=rank, world=world, batch_size=batch_size)
    _configure_pipeline(None)
    data = _batches(source, lambda: eval_image_ops(image_size), num_workers, batch_size,
                    drop_remainder=False)
    data.wrn_source = source
    return data, source.num_real


def eval_image_ops(image_size: int) -> list:
    """The image operations of evaluation, in order: ``Decode``, ``Resize`` (shorter side to
    ``round(image_size / EVAL_CROP_FRACTION)``), ``CenterCrop(image_size)``, ``Normalize``
    (ImageNet mean/std on 0..255 pixels), ``HWC2CHW``: encoded file bytes (uint8) in, a float32
    ``[3, S, S]`` array out.

    The one definition: ``eval_dataset`` maps them in its pipeline and ``wrn.predict`` runs
    them eagerly on single images, so a prediction sees exactly the pixels an evaluation does
    (and the accuracies of the two agree).
    """
    import mindspore.dataset.vision as V

    if image_size < 1:
        raise ValueError("eval_image_ops: image_size must be >= 1")
    return [
        V.Decode(),
        V.Resize(int(round(image_size / EVAL_CROP_FRACTION))),
        V.CenterCrop(image_size),
        V.Normalize(mean=list(MEAN), std=list(STD)),
        V.HWC2CHW(),
    ]


def _batches(source: Any, image_ops: Callable[[], list], num_workers: int, batch_size: int,
             drop_remainder: bool):
    """``source``'s (image, label) rows through the operations ``image_ops()`` makes (made
    after the dataset, in the order the pipelines always made them) and the label cast to
    int32, in batches."""
    import mindspore as ms
    import mindspore.dataset as ds
    import mindspore.dataset.transforms as T

    data = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=1, python_multiprocessing=False)
    data = data.map(operations=image_ops(), input_columns=["image"],
                    num_parallel_workers=usable_workers(num_workers))
    data = data.map(operations=T.TypeCast(ms.int32), input_columns=["label"])
    return data.batch(batch_size, drop_remainder=drop_remainder)
