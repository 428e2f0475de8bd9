"""What a training run is asked (``TrainConfig``) and what it answers (``TrainResult``).

Torch-free, so the Processing algorithms build them in QGIS's Python and the worker runtime sends them
to another Python with ``to_dict`` and rebuilds them there with ``from_dict``. The command line, the
job and the algorithms spell the result the same way: these field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plain import from_plain, to_plain

# Learning rates that suit each stage with AdamW: the head from scratch, pretrained layers gently.
DEFAULT_LEARNING_RATE = {"head": 1e-3, "layer4": 1e-4, "full": 1e-4}


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does. Defaults are the seed's head stage."""

    stage: str = "head"
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    backbone_lr_factor: float = 1.0  # backbone parameters train at learning_rate * this
    weight_decay: float = 1e-4
    class_weights: bool = False
    aux: bool = False
    aux_weight: float = 0.4
    pretrained: str = "auto"
    weights_file: str | None = None
    device: str = "auto"
    precision: str = "auto"  # or "float32"
    seed: int = 0
    workers: int = 0
    aspp_rates: str = "auto"  # or "scaled", "standard"; see net/aspp.py
    pixel_head: bool = True  # a new model gets net/pixel_head.py's per-pixel classifier
    crop_px: int = 0  # train on random crops of this size, several a patch (0: whole patches; see recipe.py)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The config ``to_dict`` gave."""
        return from_plain(cls, data)


@dataclass(frozen=True)
class TrainResult:
    """Where the checkpoints (and, once written, the learning curves) went and the best validation scores."""

    best_path: Path
    last_path: Path
    best_epoch: int
    pixel_accuracy: float
    mean_iou: float
    history: list[dict[str, Any]] = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    curves: Path | None = None  # the PNG; curves.write_curves puts the history's CSV and JSON beside it
    history_csv: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        """The result ``to_dict`` gave."""
        return from_plain(cls, data)

    def summary(self) -> dict[str, Any]:
        """``to_dict`` without the history and checkpoint metadata: what a person reads."""
        return {key: value for key, value in self.to_dict().items() if key not in ("history", "meta")}


def curves_beside(model: Path | str) -> Path:
    """Where the learning curves go when no path is given: beside the checkpoint, ``m.pt`` -> ``m_curves.png``."""
    model = Path(model)
    return model.with_name(f"{model.stem}_curves.png")
