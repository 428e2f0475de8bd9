"""The tiles a model predicts with: by default as it was trained.

A model trained on patches smaller than ASPP's reach (``net.aspp``) has only
ever seen that much of a scene at once; on a much larger tile its ASPP sees
content it never learned from, and its classes can collapse to one. So tile
size 0 ("as trained") takes the checkpoint's patch size for such models, and
512 px (bounded memory, few seams) for models trained on larger patches or
whose checkpoint does not say; an ONNX file that records no patch size but a
tile size (its fixed input, or its metadata's) gets that tile size. An explicit
tile size more than twice such a patch size is honoured with a warning. An
unset overlap is an eighth of the tile.

Torch-free and pure: metadata in, tiling and log lines out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..net import aspp
from ..sizing import SIZE_MULTIPLE as TILE_MULTIPLE
from .tiling import AUTO_TILE, TilingConfig

DEFAULT_TILE_PX = 512  # about 2 GB of activations on a CPU, and few tile borders
FAR_FACTOR = 2  # tiles more than this many times the training patch get a warning


@dataclass(frozen=True)
class TileChoice:
    """The tiling to predict with, a line saying why, and a warning when it is unlike training."""

    tiling: TilingConfig
    note: str | None = None
    warning: str | None = None


def _size(meta: dict[str, Any], key: str) -> int | None:
    """``meta[key]`` when it is a positive whole number of pixels, else ``None``."""
    size = meta.get(key) if isinstance(meta, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def trained_patch_size(meta: dict[str, Any]) -> int | None:
    """The patch size (px) a checkpoint's model was trained on; ``None`` when the checkpoint does not record it."""
    return _size(meta, "patch_size")


def tiles_per_run(tile_size_px: int, *, gpu: bool = False) -> int:
    """Tiles one model run takes by default: one 512 px tile's worth of pixels on a CPU, four on a GPU.

    On CPUs a 512 px tile's activations already fill the caches: batches of 4 ran
    10-15 % slower per tile than single tiles (torch bfloat16 and float32, measured on
    AMX and in AVX2 emulation); GPUs need the larger batches to fill up. Smaller
    tiles (a model trained on small patches) batch up to the same pixel count: on
    128 px tiles ONNX Runtime int8 took 5.0 s for the demo scene one tile a run,
    4.2 s a row of 14 tiles a run.
    """
    per_512 = max(1, (DEFAULT_TILE_PX // max(tile_size_px, 1)) ** 2)
    return 4 * per_512 if gpu else per_512


def default_overlap(tile_size_px: int) -> int:
    """The overlap when none is given: an eighth of the tile (64 px on 512 px tiles)."""
    return tile_size_px // 8


def recorded_tile_size(meta: dict[str, Any]) -> int | None:
    """The tile size an ONNX model's file asks for (its fixed input size, or its metadata's); ``None`` if none."""
    return _size(meta, "tile_size_px")


def _as_trained(patch: int | None, recorded: int | None = None) -> tuple[int, str]:
    if patch is None and recorded is not None:
        return recorded, f"Tiles of {recorded} px, the tile size the model's file records."
    if patch is None:
        return DEFAULT_TILE_PX, (
            f"Tiles of {DEFAULT_TILE_PX} px, the default: this model does not record the patch size it was trained "
            "on (a checkpoint written by an older version, or an ONNX file from elsewhere). If it was trained on "
            f"patches smaller than {aspp.reach_px()} px, set TILE_SIZE to that patch size."
        )
    if aspp.below_reach(patch):
        tile = math.ceil(patch / TILE_MULTIPLE) * TILE_MULTIPLE
        return tile, f"Tiles of {tile} px, the patch size this model was trained on."
    return DEFAULT_TILE_PX, (
        f"Tiles of {DEFAULT_TILE_PX} px: this model was trained on {patch} px patches, large enough for ASPP's "
        f"reach ({aspp.reach_px()} px), so any tile size suits it."
    )


def _far_from_training(tile: int, patch: int | None, rates: tuple[int, ...]) -> str | None:
    if patch is None or not aspp.below_reach(patch) or tile <= FAR_FACTOR * patch:
        return None
    larger = f"train on patches of at least {aspp.reach_px() + 8} px"
    if rates == aspp.STANDARD_RATES:
        blind = aspp.blind_taps_px(patch, rates)
        why = (
            f"on patches that small ASPP's dilated taps {', '.join(map(str, blind))} px away only ever saw zero "
            "padding, so on larger tiles they see image content the model never learned from, and the prediction "
            "can collapse to one class."
        )
        retrain = f"retrain with ASPP rates scaled to the patch size (ASPP_RATES auto) or {larger}"
    else:
        why = (
            f"its ASPP, with {aspp.describe(rates)}, was trained to look that far, but its image pooling then "
            "averages over far more of the scene than in training, which lowers accuracy."
        )
        retrain = larger
    return (
        f"TILE_SIZE {tile} px is {tile / patch:.0f}x the {patch} px patches this model was trained on: {why} "
        f"Use TILE_SIZE 0 (as trained, {patch} px), or {retrain}."
    )


def choose_tiling(requested: TilingConfig, meta: dict[str, Any]) -> TileChoice:
    """The concrete tiling for a model with checkpoint metadata ``meta``.

    Raises:
        InputError: an explicit overlap is not below half the tile size chosen.
    """
    requested.validate()
    patch = trained_patch_size(meta)
    note = None
    tile = requested.tile_size_px
    if tile == AUTO_TILE:
        tile, note = _as_trained(patch, recorded_tile_size(meta))
    overlap = requested.overlap_px if requested.overlap_px is not None else default_overlap(tile)
    if 2 * overlap >= tile:
        raise InputError(
            f"The overlap {overlap} px must be less than half the tile size ({tile} px"
            + (", the patch size this model was trained on)" if requested.tile_size_px == AUTO_TILE else ")")
            + f". Leave OVERLAP unset (an eighth of the tile) or use less than {(tile + 1) // 2} px."
        )
    tiling = TilingConfig(tile, overlap)
    tiling.validate()
    return TileChoice(tiling, note, _far_from_training(tile, patch, aspp.read_rates(meta)))
