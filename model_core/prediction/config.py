"""What a prediction is asked (``PredictConfig``) and what it answers (``PredictResult``).

Torch-free, so the Processing algorithms build them in QGIS's Python and the worker runtime sends them
to another Python with ``to_dict`` and rebuilds them there with ``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plain import from_plain, to_plain
from .tiling import TilingConfig


@dataclass(frozen=True)
class PredictConfig:
    """How to predict a scene.

    ``bands`` are the scene's 1-based band numbers in the model's band order
    (red, green, blue); ``None`` takes the first bands. ``extent`` is
    (left, bottom, right, top) in the scene's CRS; ``None`` predicts it all.
    ``precision`` is "auto" (bfloat16 where the hardware has it) or "float32".
    ``fast`` runs backbone and ASPP at output stride 16 (``fast.output_stride_16``):
    about 2-3x faster, with slightly smoother class edges. ``batch_size`` 0 picks
    ``tiles_per_batch``'s default for the device.
    """

    tiling: TilingConfig = field(default_factory=TilingConfig)
    batch_size: int = 0
    device: str = "auto"
    precision: str = "auto"
    bands: tuple[int, ...] | None = None
    extent: tuple[float, float, float, float] | None = None
    fast: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (``tiling`` as a dict)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictConfig:
        """The config ``to_dict`` gave."""
        return from_plain(cls, data)


@dataclass(frozen=True)
class PredictResult:
    """What a prediction wrote and how it went."""

    output: Path
    confidence: Path | None
    width: int
    height: int
    tiles: int
    seconds: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictResult:
        """The result ``to_dict`` gave."""
        return from_plain(cls, data)
