"""int8 static quantisation of an exported ONNX model, calibrated on training patches.

Convolutions get int8 weights per output channel and uint8 activations whose
ranges come from running the float32 model over a few dozen training patches
(min/max). ONNX Runtime then runs them as integer convolutions, which CPUs with
AVX2 (VNNI where present) compute several times faster than float32.

Kept in float32, because int8 there costs agreement (measured on the bench model,
a trained head on a random backbone, whose many near-tied pixels show every
rounding): ASPP's convolutions (its dilated 3x3 and 1x1 branches and the image
pooling branch: with them in int8, int8 agreed with float32 on 98.4 % of pixels,
in float32 on 99.1 %, for about a third of int8's speed gain), the first
convolution (the stem sees the raw colours: 98.9 -> 99.2 % on the tests' block
scene), the last 1x1 convolution (it makes the logits), the pixel head (it reads
the raw bands, like the stem, and adds to the logits; ``pixel_head.py``), the
bilinear upsampling and the softmax (the probabilities feed blending and confidence).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data.radiometry import to_unit
from ..errors import InputError
from ..progress import SILENT, Progress, check_canceled

# Never quantised (see the module's docstring); "Softmax" is the Exp, ReduceSum and Div that spell it in the graph.
KEPT_FLOAT_OPS = ("Resize", "Softmax", "GlobalAveragePool")


def calibration_tiles(patches: Path, meta: dict[str, Any], count: int) -> list[np.ndarray]:
    """Up to ``count`` training patches as normalised (1, bands, h, w) float32 arrays, evenly spread."""
    import rasterio

    from ..data.manifest import Manifest

    manifest = Manifest.load(patches)
    records = manifest.train or manifest.patches
    if not records:
        raise InputError(f"{patches} lists no patches to calibrate the int8 model on. Make patches first.")
    picked = [records[int(i)] for i in np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round())]
    spec = meta["input"]
    mean = np.asarray(spec["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(-1, 1, 1)
    bands = len(spec["band_order"])
    tiles = []
    for record in picked:
        with rasterio.open(record.image) as src:
            raw = src.read(list(range(1, bands + 1)))
        tiles.append(((to_unit(raw, float(spec["scale"])) - mean) / std)[None].astype(np.float32))
    return tiles


def _excluded_nodes(model_path: Path) -> list[str]:
    """Convolutions kept in float32: ASPP's (those reading the tensor ASPP pools, and the pooled one), stem, logits
    and the pixel head's."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    pools = [n for n in graph.node if n.op_type == "GlobalAveragePool"]
    aspp_inputs = {n.input[0] for n in pools}
    pooled = {out for n in pools for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pixel = [n.name for n in convs if "/pixel_head/" in n.name]  # the exporter names nodes by module path
    deeplab = [n for n in convs if n.name not in pixel]
    kept = [n.name for n in deeplab if n.input[0] in aspp_inputs | pooled]
    return [deeplab[0].name, *kept, deeplab[-1].name, *pixel]


def quantize_int8(float_path: Path, out_path: Path, patches: Path, meta: dict[str, Any], *, tiles: int = 32,
                  progress: Progress = SILENT) -> tuple[str, ...]:
    """Quantise the float32 ONNX model at ``float_path`` into ``out_path``; returns what stayed float32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    data = calibration_tiles(patches, meta, tiles)
    progress.info(f"Calibrating int8 ranges on {len(data)} training patches of {data[0].shape[-1]} px.")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(data)
            self.done = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            check_canceled(progress)
            item = next(self._items, None)
            if item is None:
                return None
            self.done += 1
            progress.set_progress(30 + 60 * self.done / len(data))
            return {"input": item}

    excluded = _excluded_nodes(float_path)
    quantize_static(
        str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
    )
    return (*excluded, *KEPT_FLOAT_OPS)
