"""What the benchmark runs: the naive baselines, the plugin's paths, and the hardware limit.

Everything here uses the plugin's own modules for the plugin's side and writes
the naive side out in full, so the comparison is between the seed's way (float32,
NCHW, one 512 x 512 tile at a time, no overlap, autograd everywhere) and what
the algorithms run.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.radiometry import to_unit
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.net.weights import IMAGENET_MEAN, IMAGENET_STD
from scl_deeplab.model_core.prediction.tiling import plan_tiles

META = {**checkpoint.input_to_meta(checkpoint.ModelInput.rgb("uint8", 255.0, IMAGENET_MEAN, IMAGENET_STD)), "patch_size": 512}


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` + ``reps`` times; median, min, max of the timed runs (seconds) and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "n": reps, "result": result}


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """``timed`` for several functions, run in turns (a, b, c, a, b, c, ...) so load changes hit all alike."""
    results: dict[str, Any] = {name: None for name in fns}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(warmup):
        for name, fn in fns.items():
            results[name] = fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median": statistics.median(t), "min": min(t), "max": max(t), "n": reps, "result": results[name]}
            for name, t in times.items()}


def scene(folder: Path, name: str, width: int, height: int, seed: int = 0) -> Path:
    """A synthetic uint8 true-colour scene (and its SCL) of ``width`` x ``height`` px."""
    image = folder / f"{name}.tif"
    if not image.exists():
        make_sample_scene(image, folder / f"{name}_scl.tif", width=width, height=height, seed=seed)
    return image


def naive_model(ckpt: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's model for the naive baseline: eval, float32, every weight in plain NCHW layout.

    ``checkpoint.load_model`` keeps the strides the weights were saved with. A model
    trained by the plugin runs channels-last and is saved so, and one channels-last
    weight makes each convolution after it channels-last too: the baseline would not
    be the seed's NCHW one.
    """
    model, meta = checkpoint.load_model(ckpt, device)
    return model.to(memory_format=torch.contiguous_format), meta


def forward_passes(model: torch.nn.Module, tile: int = 512) -> dict[str, Callable[[], Any]]:
    """One forward pass of ``model`` on a tile under ``no_grad``, in NCHW ("nchw") and in channels-last layout."""
    passes: dict[str, Callable[[], Any]] = {}
    for name, layout in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        net = copy.deepcopy(model).to(memory_format=layout)
        x = torch.rand(1, 3, tile, tile, device=next(model.parameters()).device).contiguous(memory_format=layout)

        def forward(net: torch.nn.Module = net, x: torch.Tensor = x) -> float:
            with torch.no_grad():
                return net(x)["out"].sum().item()  # .item() waits for a GPU to finish

        passes[name] = forward
    return passes


def naive_predict(model: torch.nn.Module, image: Path, spec: dict[str, Any] | None = None, tile: int = 512) -> np.ndarray:
    """The seed's way: eval, no_grad, float32, NCHW, one tile at a time, no overlap; SCL codes (H, W).

    ``spec`` is the checkpoint's ``meta["input"]`` (scale, mean, std); the bench's own by default.
    """
    spec = spec or META["input"]
    device = next(model.parameters()).device
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(1, 3, 1, 1)
    with rasterio.open(image) as src:
        codes = np.zeros((src.height, src.width), dtype=np.uint8)
        for t in plan_tiles(src.width, src.height, tile, 0):
            raw = src.read([1, 2, 3], window=Window(t.col_off, t.row_off, t.width, t.height))
            x = (torch.from_numpy(to_unit(raw, float(spec["scale"])))[None] - mean) / std
            with torch.no_grad():
                logits = model(x.to(device))["out"]
            codes[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] = scl.index_to_code(
                logits.argmax(1)[0].cpu().numpy()
            )
    return codes


def single_tile_pixels(width: int, height: int, tile: int = 512) -> np.ndarray:
    """(height, width) mask of the pixels that exactly one of the baseline's tiles covers.

    The last tile of a row or column is moved back inside the scene, so it overlaps
    its neighbour; there the baseline keeps the later tile's classes and the
    plugin blends both. Elsewhere both take the classes of the same tile.
    """
    count = np.zeros((height, width), dtype=np.uint8)
    for t in plan_tiles(width, height, tile, 0):
        count[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] += 1
    return count == 1


def agreement(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Share of pixels with the same code, over pixels where both hold a class (code 0 ignored), within ``where``."""
    valid = (a != scl.NO_DATA) & (b != scl.NO_DATA)
    if where is not None:
        valid &= where
    return float((a[valid] == b[valid]).mean()) if valid.any() else float("nan")


def classes(codes: np.ndarray) -> int:
    """How many SCL classes (code 0 aside) occur in ``codes``."""
    return int(np.count_nonzero(np.unique(codes) != scl.NO_DATA))


def read_codes(path: Path) -> np.ndarray:
    """Band 1 of a GeoTIFF."""
    with rasterio.open(path) as src:
        return src.read(1)


def _flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of ``model(x)``, as torch's flop counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return float(counter.get_total_flops())


def flops_per_tile(model: torch.nn.Module, tile: int = 512) -> float:
    """FLOPs of one forward pass on a tile (counted on a quarter-size input and scaled: convolutions scale with area)."""
    side = tile // 2
    return _flops(model, torch.zeros(1, 3, side, side)) * (tile / side) ** 2


def prepared_flops_per_tile(model: torch.nn.Module, precision: Any, tile: int = 512) -> float:
    """FLOPs the plugin's prediction copy of ``model`` does on one tile: Winograd and ASPP's taps do fewer.

    Counted on a full tile: the padding ASPP's taps skip does not scale with area.
    """
    from scl_deeplab.model_core.net.inference import prepare

    prep = prepare(model, precision)
    return _flops(prep.model, torch.zeros(1, 3, tile, tile, dtype=prep.input_dtype).contiguous(memory_format=torch.channels_last))


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> dict[str, float]:
    """This CPU's measured multiply-add rate in GFLOP/s (median, best, worst) for ``dtype``.

    The faster of a square matrix product (MKL) and a large 1x1 convolution in
    channels_last (oneDNN, the library the convolutions run in): either library
    alone can stay well below what the cores do.
    """
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    x = torch.randn(1, 1024, 64, 64).to(dtype).contiguous(memory_format=torch.channels_last)
    k = torch.randn(1024, 1024, 1, 1).to(dtype).contiguous(memory_format=torch.channels_last)
    rates = []
    with torch.inference_mode():
        for fn, flop in ((lambda: torch.mm(a, b), 2.0 * n**3), (lambda: torch.nn.functional.conv2d(x, k), 2.0 * 4096 * 1024**2)):
            t = timed(fn, reps, warmup=2)
            rates.append({"median": flop / t["median"] / 1e9, "best": flop / t["min"] / 1e9, "worst": flop / t["max"] / 1e9})
    return max(rates, key=lambda r: r["best"])
