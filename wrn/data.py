"""Former home of the RP2K reader, split by job; its names are imported back from there.

``wrn.datapath`` (data path checks, layout, ``count_images``), ``wrn.classindex`` (the class
index), ``wrn.images`` (image file checks), ``wrn.scan`` (the file scan and its helpers),
``wrn.splits`` (``Split``, ``scan_split``), ``wrn.shards`` (sharding, the sources) and
``wrn.pipeline`` (the MindSpore pipelines).
"""

from __future__ import annotations

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
from wrn.pipeline import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    EVAL_CROP_FRACTION,
    MEAN,
    STD,
    _configure_pipeline,
    augmentation_seed,
    eval_dataset,
    train_dataset,
    usable_workers,
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
from wrn.shards import (  # noqa: F401 (moved there; importers of wrn.data still get them)
    EvalSource,
    TrainSource,
    _check_skip,
    shard_indices,
    steps_per_epoch,
)
from wrn.splits import Split, scan_split  # noqa: F401 (moved there; importers of wrn.data still get them)

