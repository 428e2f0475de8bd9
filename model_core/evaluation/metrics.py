"""Agreement between predicted and reference SCL: one confusion matrix, every number from it.

Rows are the reference class, columns the prediction, both as class indices
(SCL code - 1). Pixels whose reference or prediction is code 0 (no data) are
ignored. Training (on the device, with torch) and the evaluation algorithm (with
numpy) accumulate the same matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import scl

N = scl.NUM_CLASSES


def confusion_from_codes(reference: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """The (11, 11) int64 confusion matrix of two SCL code arrays of the same shape."""
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.asarray(prediction).ravel().astype(np.int64)
    if ref.shape != pred.shape:
        raise ValueError(f"Reference and prediction differ in size: {ref.size} vs {pred.size}.")
    keep = (ref > 0) & (ref <= N) & (pred > 0) & (pred <= N)
    flat = (ref[keep] - 1) * N + (pred[keep] - 1)
    return np.bincount(flat, minlength=N * N).reshape(N, N)


def confusion_from_indices_torch(target: Any, predicted: Any) -> Any:
    """The (11, 11) confusion matrix of class-index tensors, on their device.

    ``target`` holds class indices with ``scl.IGNORE_INDEX`` for no data;
    ``predicted`` holds class indices (argmax of the logits).
    """
    import torch

    t = target.reshape(-1)
    p = predicted.reshape(-1)
    keep = (t >= 0) & (t < N)
    flat = t[keep].to(torch.int64) * N + p[keep].to(torch.int64)
    return torch.bincount(flat, minlength=N * N).reshape(N, N)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class Scores:
    """Agreement scores derived from a confusion matrix (class-index order)."""

    matrix: np.ndarray
    pixel_accuracy: float
    mean_iou: float
    kappa: float
    iou: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    f1: np.ndarray = field(repr=False)
    reference_pixels: np.ndarray = field(repr=False)
    predicted_pixels: np.ndarray = field(repr=False)

    def per_class(self) -> list[dict[str, Any]]:
        """One row per learned class: code, name, IoU, precision, recall, F1 and pixel counts."""
        rows = []
        for i, cls in enumerate(scl.LEARNED):
            rows.append(
                {
                    "code": cls.code,
                    "name": cls.name,
                    "iou": _none_if_nan(self.iou[i]),
                    "precision": _none_if_nan(self.precision[i]),
                    "recall": _none_if_nan(self.recall[i]),
                    "f1": _none_if_nan(self.f1[i]),
                    "reference_pixels": int(self.reference_pixels[i]),
                    "predicted_pixels": int(self.predicted_pixels[i]),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready numbers."""
        return {
            "pixel_accuracy": _none_if_nan(self.pixel_accuracy),
            "mean_iou": _none_if_nan(self.mean_iou),
            "kappa": _none_if_nan(self.kappa),
            "pixels": int(self.matrix.sum()),
            "per_class": self.per_class(),
            "confusion_matrix": self.matrix.astype(int).tolist(),
        }


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def scores(matrix: np.ndarray) -> Scores:
    """Pixel accuracy, per-class IoU, mean IoU, precision, recall, F1 and Cohen's kappa.

    Mean IoU averages over the classes present in the reference or the
    prediction; a class absent from both has no IoU (NaN) and does not count.
    """
    m = np.asarray(matrix, dtype=np.float64)
    total = m.sum()
    tp = np.diag(m)
    ref = m.sum(axis=1)
    pred = m.sum(axis=0)
    union = ref + pred - tp
    iou = _ratio(tp, union)
    precision = _ratio(tp, pred)
    recall = _ratio(tp, ref)
    f1 = _ratio(2 * tp, ref + pred)
    present = union > 0
    if total > 0:
        accuracy = tp.sum() / total
        expected = (ref * pred).sum() / (total * total)
        kappa = (accuracy - expected) / (1 - expected) if expected < 1 else float("nan")
    else:
        accuracy = kappa = float("nan")
    mean_iou = float(iou[present].mean()) if present.any() else float("nan")
    return Scores(
        matrix=np.asarray(matrix).astype(np.int64),
        pixel_accuracy=float(accuracy),
        mean_iou=mean_iou,
        kappa=float(kappa),
        iou=iou,
        precision=precision,
        recall=recall,
        f1=f1,
        reference_pixels=ref.astype(np.int64),
        predicted_pixels=pred.astype(np.int64),
    )


@dataclass(frozen=True)
class Evaluation:
    """Scores of a prediction against a reference over one window of the prediction's grid."""

    scores: Scores
    prediction: Path
    reference: Path
    width: int
    height: int
    bounds: tuple[float, float, float, float]
    crs: str
    disagreeing_pixels: int

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready numbers and where they come from."""
        return {
            "prediction": str(self.prediction),
            "reference": str(self.reference),
            "width": self.width,
            "height": self.height,
            "bounds": list(self.bounds),
            "crs": self.crs,
            "disagreeing_pixels": self.disagreeing_pixels,
            **self.scores.to_dict(),
        }
