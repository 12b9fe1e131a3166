"""Where a resumed run starts, from a checkpoint's (epoch, step, world size)."""

from wrn.train import StartPoint, start_point


def test_whole_epoch_checkpoint_same_world():
    meta = {"epoch": 2, "step": 18, "world_size": 2, "steps_per_epoch": 18}
    assert start_point(meta, 18, 2, "c") == StartPoint(2, 0, 36, "c", None)


def test_mid_epoch_checkpoint_same_world():
    meta = {"epoch": 3, "step": 7, "world_size": 2, "steps_per_epoch": 18}
    assert start_point(meta, 18, 2, "c") == StartPoint(2, 7, 43, "c", None)


def test_other_world_size_converts_seen_batches_and_says_so():
    meta = {"epoch": 3, "step": 7, "world_size": 2, "steps_per_epoch": 18}
    sp = start_point(meta, 12, 3, "c")  # 7 x 2 old batches = 4 whole batches of 3 ranks
    assert (sp.epochs_done, sp.skip_steps, sp.global_step) == (2, 4, 28)
    assert "written by 2 rank(s), this run has 3" in sp.note
    whole = start_point({"epoch": 1, "step": 18, "world_size": 2, "steps_per_epoch": 18}, 37, 1, "c")
    assert (whole.epochs_done, whole.skip_steps, whole.global_step) == (1, 0, 37)
