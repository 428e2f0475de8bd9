"""What an exported ONNX model says about itself: the one owner of its metadata keys.

An ONNX file carries string key/value pairs (``metadata_props``). SCL DeepLab writes two sets:

- ``scl_deeplab``: one JSON object with ``format`` ("scl-deeplab-onnx"), ``version``, ``classes``
  (code, name, color, in output order), ``input`` (as in checkpoints: bands, band_order, dtype,
  scale, mean, std), ``tile_size_px``, ``overlap_px``, ``patch_size``, ``precision`` ("float32" or
  "int8"), ``output`` ("probabilities"), ``weights_source``, ``architecture``, ``versions`` and
  ``exported``;
- the keys Deepness (the QGIS plugin) parses, each a JSON value: ``model_type`` ("Segmentor"),
  ``class_names`` ({"0": name, ...} by output index), ``resolution`` (cm per pixel), ``tile_size``
  (px), ``tiles_overlap`` (percent of the tile), ``standardization_mean`` and ``standardization_std``
  (per band, for inputs divided by 255), ``seg_thresh`` (0: no threshold).

Reading falls back on the Deepness keys for files that lack ours. Nothing here imports torch or onnx.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from .. import scl
from ..errors import CheckpointError
from ..net.model_input import ModelInput, input_from_meta
from .tile_choice import choose_tiling
from .tiling import TilingConfig

log = logging.getLogger(__name__)

KEY = "scl_deeplab"
FORMAT, VERSION = "scl-deeplab-onnx", 1
DEEPNESS_INPUT_SCALE = 255.0  # Deepness divides every input by 255 before standardising
PRECISIONS = ("float32", "int8")


@dataclass(frozen=True)
class OnnxModelInfo:
    """How to feed an ONNX segmentation model and read its outputs.

    ``codes`` are the SCL codes of the model's outputs, in output order; ``warnings``
    say what had to be assumed (e.g. no class table).
    """

    spec: ModelInput
    codes: tuple[int, ...]
    precision: str = "float32"
    tile_size_px: int | None = None
    overlap_px: int | None = None
    patch_size: int | None = None
    aspp_rates: tuple[int, ...] | None = None
    ours: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


def metadata_props(
    meta: dict[str, Any], *, precision: str, exported: str, resolution_m: float, versions: dict[str, str]
) -> dict[str, str]:
    """The metadata of a model exported from a checkpoint's ``meta``, every value a JSON string."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    spec = input_from_meta(meta)
    tiling = choose_tiling(TilingConfig(), meta).tiling  # as predict tiles the checkpoint by default
    tile, overlap = tiling.tile_size_px, tiling.overlap_px
    classes = [{"code": c.code, "name": c.name, "color": c.color} for c in scl.LEARNED]
    ours = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": meta.get("architecture"),
        "classes": classes,
        "input": dict(meta["input"]),
        "patch_size": meta.get("patch_size"),
        "aspp_rates": meta.get("aspp_rates"),
        "tile_size_px": tile,
        "overlap_px": overlap,
        "precision": precision,
        "output": "probabilities",
        "weights_source": meta.get("weights_source"),
        "best": meta.get("best"),
        "trained_versions": meta.get("versions"),
        "versions": versions,
        "exported": exported,
    }
    # Deepness standardises x / 255; a model trained on another scale has no exact equivalent there.
    unit = spec.scale / DEEPNESS_INPUT_SCALE
    deepness = {
        "model_type": "Segmentor",
        "class_names": {str(i): c["name"] for i, c in enumerate(classes)},
        "resolution": float(resolution_m) * 100.0,
        "tile_size": tile,
        "tiles_overlap": int(round(100 * overlap / tile)),
        "standardization_mean": [m * unit for m in spec.mean],
        "standardization_std": [s * unit for s in spec.std],
        "seg_thresh": 0.0,
    }
    props = {KEY: json.dumps(ours)}
    props.update({key: json.dumps(value) for key, value in deepness.items()})
    return props


def _json(props: dict[str, str], key: str) -> Any:
    try:
        return json.loads(props[key])
    except (KeyError, ValueError):
        return None


def _codes_from_names(names: list[str]) -> tuple[int, ...] | None:
    """SCL codes for class names that all are SCL class names (any case), else None."""
    by_name = {c.name.lower(): c.code for c in scl.LEARNED}
    codes = [by_name.get(str(n).strip().lower()) for n in names]
    return tuple(codes) if all(c is not None for c in codes) else None  # type: ignore[misc]


def read_info(props: dict[str, str], *, channels: int | None, outputs: int | None, source: str) -> OnnxModelInfo:
    """Parse a model's metadata; ``channels`` and ``outputs`` are its input and output channel counts, if fixed.

    Raises:
        CheckpointError: the file is not a segmentation model, or its metadata contradicts its graph.
    """
    ours = _json(props, KEY)
    if isinstance(ours, dict) and ours.get("format") == FORMAT:
        if not isinstance(ours.get("version"), int) or ours["version"] > VERSION:
            raise CheckpointError(
                f"{source} is an SCL DeepLab ONNX model of format {ours.get('version')}, newer than this plugin "
                f"reads ({VERSION}). Update SCL DeepLab."
            )
        spec = input_from_meta({"input": ours.get("input")})
        codes = tuple(int(c["code"]) for c in ours.get("classes") or [])
        rates = ours.get("aspp_rates")
        info = OnnxModelInfo(spec, codes, str(ours.get("precision", "float32")), ours.get("tile_size_px"),
                             ours.get("overlap_px"), patch_size=ours.get("patch_size"),
                             aspp_rates=tuple(rates) if isinstance(rates, list) else None, ours=True)
    else:
        info = _foreign_info(props, channels=channels, outputs=outputs, source=source)
    _check(info, channels=channels, outputs=outputs, source=source)
    return info


def _foreign_info(props: dict[str, str], *, channels: int | None, outputs: int | None, source: str) -> OnnxModelInfo:
    """A model exported elsewhere, described (if at all) by the keys Deepness reads."""
    model_type = _json(props, "model_type")
    if model_type is not None and str(model_type).lower() not in ("segmentor", "segmentation"):
        raise CheckpointError(
            f"{source} is a {model_type} model, not a segmentation model. Choose a segmentation model "
            "(e.g. one written by Export model to ONNX)."
        )
    if channels is None:
        raise CheckpointError(
            f"{source} does not fix its number of input bands and has no SCL DeepLab metadata. Export it with a "
            "fixed channel dimension, or use Export model to ONNX."
        )
    mean = _json(props, "standardization_mean") or [0.0] * channels
    std = _json(props, "standardization_std") or [1.0] * channels
    spec = input_from_meta(
        {"input": {"band_order": [f"band {i + 1}" for i in range(channels)], "dtype": "uint8",
                   "scale": DEEPNESS_INPUT_SCALE, "mean": mean, "std": std}}
    )
    warnings = []
    names = _json(props, "class_names") or _json(props, "names")
    codes = None
    if isinstance(names, dict) and names:
        codes = _codes_from_names([v for _, v in sorted(names.items(), key=lambda kv: int(kv[0]))])
    if codes is None:
        if outputs is None:
            raise CheckpointError(
                f"{source} has neither a class table nor a fixed number of outputs; SCL codes cannot be assigned."
            )
        codes = tuple(range(1, outputs + 1))
        warnings.append(
            f"{source} has no class table of SCL class names: its {outputs} outputs are taken as SCL codes "
            f"1-{outputs} in order."
        )
    tile = _json(props, "tile_size")
    overlap_percent = _json(props, "tiles_overlap")
    overlap = int(tile * overlap_percent / 100) if isinstance(tile, int) and isinstance(overlap_percent, int) else None
    return OnnxModelInfo(spec, codes, "float32", tile if isinstance(tile, int) else None, overlap,
                         warnings=tuple(warnings))


def _check(info: OnnxModelInfo, *, channels: int | None, outputs: int | None, source: str) -> None:
    if channels is not None and channels != len(info.spec.band_order):
        raise CheckpointError(
            f"{source} takes {channels} input bands, but its metadata describes {info.spec.describe()}. "
            "The file is damaged or was edited; export it again."
        )
    if outputs is not None and outputs != len(info.codes):
        raise CheckpointError(
            f"{source} returns {outputs} class maps, but its metadata lists {len(info.codes)} classes. "
            "The file is damaged or was edited; export it again."
        )
    bad = [c for c in info.codes if c not in scl.learned_codes()]
    if bad or len(set(info.codes)) != len(info.codes) or not info.codes:
        raise CheckpointError(
            f"{source} predicts classes {list(info.codes)}; this plugin writes SCL codes 1-{scl.MAX_CODE}, each once. "
            "Use a model with at most 11 classes named like the SCL classes."
        )
