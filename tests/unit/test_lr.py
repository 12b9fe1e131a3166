"""Per-step learning-rate schedules."""

import numpy as np
import pytest

from wrn.lr import lr_schedule


def test_cosine_with_warmup():
    lr = lr_schedule("cosine", 0.1, 10, 5, warmup_epochs=1, lr_end=0.0)
    assert lr.shape == (50,)
    assert lr.dtype == np.float32
    assert lr[0] == pytest.approx(0.01)
    assert lr[9] == pytest.approx(0.1)
    assert np.all(np.diff(lr[:10]) > 0)
    assert np.all(np.diff(lr[10:]) <= 1e-9)
    assert lr[10] == pytest.approx(0.1)
    assert lr[-1] < 0.002


def test_step_schedule():
    lr = lr_schedule("step", 1.0, 4, 6, decay_epochs=[2, 4], decay_factor=0.1)
    assert np.allclose(lr[:8], 1.0)
    assert np.allclose(lr[8:16], 0.1)
    assert np.allclose(lr[16:], 0.01)


def test_constant_and_fractional_warmup():
    lr = lr_schedule("constant", 0.2, 10, 2, warmup_epochs=0.5)
    assert lr[4] == pytest.approx(0.2)
    assert lr[0] == pytest.approx(0.04)
    assert np.allclose(lr[5:], 0.2)


def test_bad_arguments():
    with pytest.raises(ValueError):
        lr_schedule("cosine", 0.1, 0, 3)
    with pytest.raises(ValueError):
        lr_schedule("linear", 0.1, 3, 3)
