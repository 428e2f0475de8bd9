"""Metrics from a confusion matrix, checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scl_deeplab.model_core.evaluation.metrics import confusion_from_codes, confusion_from_indices_torch, scores


def test_confusion_ignores_code_0_in_reference_and_prediction():
    ref = np.array([4, 4, 4, 6, 6, 0, 5])
    pred = np.array([4, 4, 6, 6, 0, 4, 5])
    m = confusion_from_codes(ref, pred)
    assert m.sum() == 5
    assert m[3, 3] == 2 and m[3, 5] == 1 and m[5, 5] == 1 and m[4, 4] == 1


def test_scores_by_hand():
    # reference vegetation(4) x4, water(6) x2; prediction: 3 of 4 vegetation right, 1 called water, water right.
    ref = np.array([4, 4, 4, 4, 6, 6])
    pred = np.array([4, 4, 4, 6, 6, 6])
    s = scores(confusion_from_codes(ref, pred))
    assert s.pixel_accuracy == pytest.approx(5 / 6)
    assert s.iou[3] == pytest.approx(3 / 4)  # tp 3, union 4
    assert s.iou[5] == pytest.approx(2 / 3)  # tp 2, union 3
    assert s.mean_iou == pytest.approx((3 / 4 + 2 / 3) / 2)
    # kappa: po = 5/6, pe = (4*3 + 2*3) / 36 = 0.5
    assert s.kappa == pytest.approx((5 / 6 - 0.5) / 0.5)
    assert s.precision[5] == pytest.approx(2 / 3)
    assert s.recall[3] == pytest.approx(3 / 4)
    assert np.isnan(s.iou[0])


def test_torch_and_numpy_matrices_agree():
    import torch
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 12, size=(4, 16, 16))
    pred = rng.integers(1, 12, size=(4, 16, 16))
    target = torch.from_numpy(ref.astype(np.int64) - 1)
    target[target < 0] = -100
    m_torch = confusion_from_indices_torch(target, torch.from_numpy(pred - 1)).numpy()
    assert (m_torch == confusion_from_codes(ref, pred)).all()
