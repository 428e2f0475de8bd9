"""What a network expects as input (bands, data type, scale, normalisation), and how checkpoints record it.

Torch-free, so prediction through ONNX Runtime and the algorithms can read it without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CheckpointError

RGB = ("red", "green", "blue")


@dataclass(frozen=True)
class ModelInput:
    """What the network expects as input: bands, their data type, scale and per-band normalisation."""

    band_order: tuple[str, ...]
    dtype: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def rgb(cls, dtype: str, scale: float, mean: Sequence[float], std: Sequence[float]) -> ModelInput:
        """True colour (red, green, blue) of ``dtype``, divided by ``scale``, normalised by ``mean`` and ``std``."""
        return cls(RGB, dtype, float(scale), tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def describe(self) -> str:
        """E.g. "3 bands (red, green, blue) of type uint8"."""
        return f"{len(self.band_order)} bands ({', '.join(self.band_order)}) of type {self.dtype}"


def input_to_meta(spec: ModelInput) -> dict[str, Any]:
    """The checkpoint metadata recording ``spec``: ``{"input": {...}}``, to merge into ``meta``."""
    return {
        "input": {
            "bands": len(spec.band_order),
            "band_order": list(spec.band_order),
            "dtype": spec.dtype,
            "scale": float(spec.scale),
            "mean": [float(v) for v in spec.mean],
            "std": [float(v) for v in spec.std],
        }
    }


def input_from_meta(meta: dict[str, Any], where: str = "The checkpoint") -> ModelInput:
    """The ``ModelInput`` that ``input_to_meta`` recorded in ``meta``, checked.

    Raises:
        CheckpointError: ``meta`` records no input or an incomplete or malformed one;
            ``where`` (e.g. the file) starts the message.
    """
    spec = meta.get("input") if isinstance(meta, dict) else None
    try:
        order = tuple(str(b) for b in spec["band_order"])  # type: ignore[index]
        result = ModelInput(
            band_order=order,
            dtype=str(spec["dtype"]),  # type: ignore[index]
            scale=float(spec["scale"]),  # type: ignore[index]
            mean=tuple(float(v) for v in spec["mean"]),  # type: ignore[index]
            std=tuple(float(v) for v in spec["std"]),  # type: ignore[index]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where} does not say which input its model expects (meta['input'] with band_order, "
            "dtype, scale, mean, std). Train it again with this plugin."
        ) from exc
    if not (len(result.mean) == len(result.std) == len(order)) or min(result.std, default=0) <= 0:
        raise CheckpointError(f"{where}'s input normalisation (mean/std per band) is malformed. Retrain it.")
    return result
