"""int8 static quantisation of an exported ONNX model, calibrated on training patches.

Convolutions get int8 weights per output channel and uint8 activations whose
ranges come from running the float32 model over a few dozen training patches
(min/max). ONNX Runtime then runs them as integer convolutions, which CPUs with
AVX2 (VNNI where present) compute several times faster than float32.

Kept in float32, because int8 there costs agreement: the first convolution (the
stem sees the raw colours: 98.9 -> 99.2 % of pixels agreeing with float32 on the
tests' block scene), the last 1x1 convolution (it makes the logits), the pixel
head (it reads the raw bands, like the stem, and adds to the logits;
``pixel_head.py``), the bilinear upsampling and the softmax (the probabilities
feed blending and confidence).

ASPP's convolutions run in int8. Its three dilated 3x3 convolutions (2048 -> 256
channels at 1/8 of the tile) are a third of the network's multiply-adds, and in
float32 they took 57 % of an int8 model's time per 512 px tile on an AMX CPU (0.58 s a tile; 0.34
s with them in int8, against torch bfloat16's 0.39 s). On the demo's trained
model int8 ASPP agreed with float32 on 99.68 % of the evaluation scene's pixels,
99.69 % with ASPP in float32. (Kept in float32 before, on the measure of a weak
bench model whose many near-tied pixels show every rounding: 98.4 against 99.1 %.)
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
KEPT_FLOAT_OPS = ("Resize", "Softmax")


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
    """Convolutions kept in float32: the stem, ASPP's image pooling branch, the logits and the pixel head's."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    pooled = {out for n in graph.node if n.op_type == "GlobalAveragePool" for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pixel = [n.name for n in convs if "/pixel_head/" in n.name]  # the exporter names nodes by module path
    deeplab = [n for n in convs if n.name not in pixel]
    pooling = [n.name for n in deeplab if n.input[0] in pooled]
    return [deeplab[0].name, *pooling, deeplab[-1].name, *pixel]


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
    _shapes_from_quantized(out_path)
    return (*excluded, *KEPT_FLOAT_OPS)


def _shapes_from_quantized(path: Path) -> None:
    """Point each Shape node that reads a dequantized tensor at the int8 tensor itself (the same shape).

    ASPP's image pooling branch takes the feature map's size from layer4's output: ONNX Runtime dequantized all
    of it (2048 channels at 1/8 of the tile) twice a tile only to read its shape, 2.4 % of an int8 tile's time.
    """
    import onnx

    model = onnx.load(str(path))
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    shapes = [n for n in model.graph.node if n.op_type == "Shape" and n.input[0] in dequantized]
    for node in shapes:
        node.input[0] = dequantized[node.input[0]]
    if shapes:
        onnx.save(model, str(path))
