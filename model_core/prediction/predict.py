"""Whole-scene prediction, tile by tile, written out row-band by row-band.

A scene is read one band of tile rows at a time with rasterio windows; tiles run
through the model in batches; class probabilities of overlapping tiles are
averaged with the blend window from ``tiling`` so no seam shows; rows that no
later tile touches are finished, written and dropped. Memory therefore grows with
the scene's width times one tile, never with its height.

Models are cached per process, keyed by checkpoint path, modification time and
device, so batch runs over many scenes load a checkpoint once.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .. import scl
from ..atomic import atomic_file, refuse_overwriting_inputs
from ..data import bands as band_lists
from ..data.radiometry import nodata_mask, to_unit
from ..data.raster_write import checked_raster
from ..data.rasters import extent_window, label_profile, open_raster
from ..errors import BandCountError, CheckpointError, InputError
from ..net.device import Precision, describe, pick_device, pick_precision
from ..net.model_input import ModelInput, input_from_meta
from ..progress import SILENT, Progress, check_canceled
from ..styles import confidence_qml, write_style
from .config import PredictConfig, PredictResult
from .tile_choice import DEFAULT_TILE_PX, choose_tiling, tiles_per_run, trained_patch_size
from .tiling import RowBand, Tile, blend_weights, plan_tiles, tile_rows

try:
    import torch

    from ..net.inference import clear_prepared, prepared
except ModuleNotFoundError as _missing:  # .onnx models predict without PyTorch, through ONNX Runtime (onnx_runtime.py)
    if (_missing.name or "").split(".")[0] != "torch":
        raise
    torch = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SMALL_TILE_PX = 128  # below this a tile shows the model less than its usual context: warn
CONFIDENCE_NODATA = 255  # confidence is 0-100 %, so 255 is free to mark no data
FAST_MIN_TILE_PX = 128  # below this, fast mode's stride-16 grid is too coarse to pay (see predict_scene)


def choose_bands(src: rasterio.io.DatasetReader, spec: ModelInput, bands: Sequence[int] | None) -> tuple[int, ...]:
    """The scene's bands to feed the model, after checking count, names and data type against the checkpoint.

    Without ``bands``: the bands whose descriptions carry the model's band names, else the first ones.
    """
    wanted = len(spec.band_order)
    if bands:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) != wanted:
            raise BandCountError(
                f"BANDS lists {len(chosen)} band(s) {list(chosen)}, but the model expects {spec.describe()}. "
                f"Pick the scene's {', '.join(spec.band_order)} bands, in that order."
            )
    else:
        chosen = band_lists.by_name(src, spec.band_order) or tuple(range(1, wanted + 1))
        if src.count < wanted:
            has = ", ".join(band_lists.band_names(src, range(1, src.count + 1)))
            raise BandCountError(
                f"The scene {src.name} has {src.count} band(s) ({has}), "
                f"but the model expects {spec.describe()}. "
                + ("Use a true-colour raster (e.g. the Sentinel-2 TCI) or a multi-band scene and pick its bands with "
                   "BANDS." if band_lists.is_true_colour(spec.band_order) else
                   "Use a scene with those bands (Prepare L2A or Download L2A with that band list).")
            )
    missing = [b for b in chosen if b < 1 or b > src.count]
    if missing:
        raise BandCountError(f"The scene {src.name} has {src.count} bands; band(s) {missing} do not exist.")
    named = band_lists.by_name(src, spec.band_order)
    hint = f" (BANDS={','.join(map(str, named))} here)" if named else ""
    band_lists.check_same(
        spec.band_order, band_lists.band_names(src, chosen), f"The scene {src.name} (bands {list(chosen)})",
        f"The model was trained on {spec.describe()}: pick those bands in that order with BANDS{hint}.",
    )
    dtypes = {src.dtypes[b - 1] for b in chosen}
    if dtypes != {spec.dtype}:
        found = ", ".join(sorted(dtypes))
        raise InputError(
            f"The scene {src.name} holds {found} values, but the model was trained on {spec.describe()} "
            f"(values divided by {spec.scale:g}). Use a {spec.dtype} scene like the one it was trained on, "
            f"or a model trained on {found} data."
        )
    return chosen


def finish(probs: np.ndarray, nodata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blended probabilities (classes, h, w) to SCL codes and confidence (uint8, 0-100); no data to 0 and 255."""
    codes = scl.index_to_code(probs.argmax(axis=0))
    confidence = np.rint(probs.max(axis=0) * 100).astype(np.uint8)
    codes[nodata] = scl.NO_DATA
    confidence[nodata] = CONFIDENCE_NODATA
    return codes, confidence


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for i in range(0, len(tiles), size):
        yield tiles[i : i + size]


def _model_device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def tiles_per_batch(batch_size: int, device: torch.device, tile_size_px: int = DEFAULT_TILE_PX) -> int:
    """``batch_size``, or for 0 the default for the device (``tile_choice.tiles_per_run``)."""
    return batch_size or tiles_per_run(tile_size_px, gpu=device.type != "cpu")


@runtime_checkable
class TileModel(Protocol):
    """A model that is no torch module but runs tiles itself (``onnx_runtime.OnnxModel``)."""

    def tiles_per_batch(self, batch_size: int, tile_size_px: int) -> int:
        """``batch_size``, or for 0 this model's default for tiles of this size."""

    def describe(self) -> str:
        """Where and how the model runs, for the log."""

    def tile_runner(self, spec: ModelInput, weights: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """Like ``TileRunner``: (N, bands, h, w) in 0-1 -> (N, classes, h, w) weight-multiplied probabilities."""


class TileRunner:
    """The model on batches of tiles: normalise, forward, softmax, multiply by the blend weights.

    The model runs as a prediction-only copy (``inference.prepared``: BatchNorm
    folded, bfloat16 weights where the hardware has them, output stride 16 with
    ``fast``), made once per model and precision.
    """

    def __init__(
        self, model: torch.nn.Module, spec: ModelInput, precision: Precision, weights: np.ndarray, *, fast: bool = False
    ) -> None:
        device = _model_device(model)
        self.prepared = prepared(model, precision, fast=fast)
        self.model = self.prepared.model
        self.device = device
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.weights = torch.from_numpy(weights).to(device)
        self.autocast_dtype = self.prepared.autocast_dtype

    def __call__(self, unit: np.ndarray) -> np.ndarray:
        """(N, bands, h, w) true colour in 0-1 -> (N, classes, h, w) weight-multiplied probabilities."""
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with torch.inference_mode():
            x = (torch.from_numpy(unit).to(self.device) - self.mean) / self.std
            x = x.to(self.prepared.input_dtype).contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = self.model(x)["out"]
            if logits.shape[-2:] != unit.shape[-2:] or logits.shape[1] != scl.NUM_CLASSES:
                raise CheckpointError(
                    f"The model returned {tuple(logits.shape)} for tiles of {unit.shape[-1]} x {unit.shape[-2]} px; "
                    f"expected {scl.NUM_CLASSES} class maps of the tile's size. Use a checkpoint trained with this plugin."
                )
            return (logits.float().softmax(dim=1) * self.weights).cpu().numpy()


def predict_scene(
    image_path: Path | str,
    model: torch.nn.Module | TileModel,
    meta: dict[str, Any],
    out_path: Path | str,
    config: PredictConfig = PredictConfig(),
    *,
    confidence_path: Path | str | None = None,
    progress: Progress = SILENT,
) -> PredictResult:
    """Predict SCL codes for a scene with a loaded model (in eval mode, or a ``TileModel``) and write a GeoTIFF.

    The output has the scene's CRS, transform and size (or those of ``config.extent``),
    is tiled and DEFLATE-compressed, embeds the SCL colour table and gets a ``.qml``
    sidecar. Input no-data becomes code 0. With ``confidence_path``, the winning
    class's probability is written too (uint8, 0-100). A cancel or an error leaves
    no output behind.
    """
    if config.batch_size < 0:
        raise InputError(f"The batch size must be 0 (auto) or more, got {config.batch_size}.")
    refuse_overwriting_inputs({"scene": image_path}, {"prediction": out_path, "confidence": confidence_path})
    choice = choose_tiling(config.tiling, meta)
    spec = input_from_meta(meta)
    tiling = choice.tiling
    if isinstance(model, TileModel):
        batch_size, described = model.tiles_per_batch(config.batch_size, tiling.tile_size_px), model.describe()
    else:
        device = _model_device(model)
        precision = pick_precision(device, config.precision)
        batch_size = tiles_per_batch(config.batch_size, device, tiling.tile_size_px)
        described = describe(device, precision)
    started = time.perf_counter()
    out_path = Path(out_path)
    with open_raster(image_path) as src:
        bands = choose_bands(src, spec, config.bands)
        region = Window(0, 0, src.width, src.height)
        if config.extent is not None:
            region = extent_window(src, config.extent)
        col0, row0 = int(region.col_off), int(region.row_off)
        width, height = int(region.width), int(region.height)
        if choice.note:
            progress.info(choice.note)
        if choice.warning:
            progress.warn(choice.warning)
        tiles = plan_tiles(width, height, tiling.tile_size_px, tiling.overlap_px)
        th, tw = tiles[0].height, tiles[0].width
        progress.info(
            f"Predicting {width} x {height} px in {len(tiles)} tiles of {tw} x {th} px "
            f"(overlap {tiling.overlap_px} px, batches of {min(batch_size, len(tile_rows(tiles)[0]))}) "
            f"with bands {list(bands)} as {', '.join(spec.band_order)}."
        )
        progress.info(described)
        patch = trained_patch_size(meta)
        # A model trained on small patches is meant to run on tiles that small (issue 23): no warning then.
        if 0 < tiling.tile_size_px < SMALL_TILE_PX and (patch is None or tiling.tile_size_px < patch):
            progress.warn(
                f"Tiles of {tiling.tile_size_px} px show the model little context around each pixel, and "
                f"{len(tiles)} of them run slowly; use {SMALL_TILE_PX} px or more (512 by default)."
            )
        if config.fast and not isinstance(model, TileModel):
            progress.info("Fast mode: backbone and ASPP run at output stride 16 (smoother class edges).")
            if max(th, tw) < FAST_MIN_TILE_PX:
                # Measured on 32 px tiles (s2-multiband, issue 23): slower than plain mode, 7 points less accurate.
                progress.warn(
                    f"Fast mode on tiles of {tw} x {th} px: at output stride 16 the backbone sees a "
                    f"{-(-tw // 16)} x {-(-th // 16)} grid per tile, which changes more classes than on large tiles "
                    "and saves no time. Turn fast mode off for models trained on small patches."
                )
        profile = label_profile(
            {"width": width, "height": height, "crs": src.crs, "transform": window_transform(region, src.transform)}
        )
        weights = blend_weights(th, tw, tiling.overlap_px)
        if isinstance(model, TileModel):
            runner = model.tile_runner(spec, weights)
        else:
            runner = TileRunner(model, spec, precision, weights, fast=config.fast)
        nodata = [src.nodatavals[b - 1] for b in bands]
        band = RowBand(scl.NUM_CLASSES, th, width)
        with ExitStack() as stack:
            # Both temporary files are checked before either replaces anything.
            tmp_out = stack.enter_context(atomic_file(out_path))
            tmp_conf = stack.enter_context(atomic_file(confidence_path)) if confidence_path is not None else None
            dst = stack.enter_context(checked_raster(tmp_out, out_path, **profile))
            dst.write_colormap(1, scl.colormap())
            conf_dst = None
            if tmp_conf is not None:
                conf_dst = stack.enter_context(
                    checked_raster(tmp_conf, confidence_path, **{**profile, "nodata": CONFIDENCE_NODATA})
                )

            def flush(until: int) -> None:
                first, probs, nodata_rows = band.pop(until)
                codes, confidence = finish(probs, nodata_rows)
                window = Window(0, first, width, until - first)
                dst.write(codes, 1, window=window)
                if conf_dst is not None:
                    conf_dst.write(confidence, 1, window=window)

            done = 0
            for row in tile_rows(tiles):
                top = row[0].row_off
                if top > band.top:
                    flush(top)
                raw = src.read(bands, window=Window(col0, row0 + top, width, th))
                missing = nodata_mask(raw, nodata)
                band.set_nodata(top, missing)
                unit = to_unit(raw, spec.scale)
                unit[:, missing] = 0.0  # no data reads as 0, whatever its raw value (NaN, -9999)
                for batch in _batches(row, batch_size):
                    check_canceled(progress)
                    weighted = runner(np.stack([unit[:, :, t.col_off : t.col_off + tw] for t in batch]))
                    for tile, probs in zip(batch, weighted):
                        band.add(probs, weights, tile)
                    done += len(batch)
                    progress.set_progress(100.0 * done / len(tiles))
            flush(height)
        write_style(out_path)
        if confidence_path is not None:
            write_style(confidence_path, confidence_qml())
    seconds = time.perf_counter() - started
    log.debug("Predicted %s in %.1f s (%d tiles)", image_path, seconds, len(tiles))
    return PredictResult(
        output=out_path,
        confidence=Path(confidence_path) if confidence_path is not None else None,
        width=width,
        height=height,
        tiles=len(tiles),
        seconds=seconds,
        device=described,
    )


_CACHE: dict[tuple[str, int, str], tuple[torch.nn.Module, dict[str, Any]]] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(checkpoint_path: Path | str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's model on ``device``, loaded once per process while the file is unchanged.

    The cache is keyed by path, modification time and device and holds one model
    (DeepLabv3 weighs ~170 MB); a changed file is loaded again. The model is only
    ever read (eval mode, inference mode), and each caller gets its own copy of meta.
    """
    path = Path(checkpoint_path).expanduser().resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise CheckpointError(f"The model checkpoint {path} does not exist. Train a model first or pick its .pt file.") from exc
    key = (str(path), mtime, str(device))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            from ..net import checkpoint

            _CACHE.clear()  # before loading, so two models never sit in memory together
            model, meta = checkpoint.load_model(path, device)
            model.eval()
            model.to(memory_format=torch.channels_last)
            hit = _CACHE[key] = (model, meta)
            log.debug("Loaded %s onto %s", path, device)
    return hit[0], copy.deepcopy(hit[1])


def clear_model_cache() -> None:
    """Forget cached models and their prediction-only copies (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    if torch is not None:
        clear_prepared()


def predict_scene_from_checkpoint(
    image_path: Path | str,
    checkpoint_path: Path | str,
    out_path: Path | str,
    config: PredictConfig = PredictConfig(),
    *,
    confidence_path: Path | str | None = None,
    progress: Progress = SILENT,
) -> PredictResult:
    """``predict_scene`` with the model of a checkpoint file, on ``config.device``, cached per process.

    A ``.onnx`` file runs through ONNX Runtime (``onnx_runtime``), which needs no PyTorch.
    """
    config.tiling.validate()
    # Before loading the model; predict_scene checks the scene.
    refuse_overwriting_inputs({"model": checkpoint_path}, {"prediction": out_path, "confidence": confidence_path})
    if Path(checkpoint_path).suffix.lower() == ".onnx":
        from .onnx_runtime import cached_onnx_model

        model, meta = cached_onnx_model(checkpoint_path, config.device, progress=progress)
    else:
        model, meta = cached_model(checkpoint_path, pick_device(config.device))
    return predict_scene(
        image_path, model, meta, out_path, config, confidence_path=confidence_path, progress=progress
    )
