"""Window maths for tiled prediction: where the tiles go and how overlaps are blended.

Tiles of ``tile_size_px`` advance by ``tile_size_px - overlap_px``; the last tile
of a row or column is shifted inward so it ends at the scene's edge instead of
hanging over it. A scene smaller than one tile along an axis gets one tile of the
scene's size along that axis. Overlapping predictions are averaged with a smooth
weight window that fades towards each tile's edges, where a convolutional network
sees the least context, so tile borders leave no seams.

Everything here is pure: sizes in, offsets and arrays out; ``RowBand`` keeps the
blended rows of one band of tiles in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import numpy as np
from rasterio.windows import Window

from ..errors import InputError
from ..sizing import axis_offsets, check_size

AUTO_TILE = 0  # tile size "as trained": resolved per model by ``tile_choice``


@dataclass(frozen=True)
class TilingConfig:
    """Tile size and overlap in pixels.

    A tile size of 0 (``AUTO_TILE``) and an overlap of ``None`` are chosen per
    model when it is known (``tile_choice``): the patch size it was trained on,
    and an eighth of the tile.
    """

    tile_size_px: int = AUTO_TILE
    overlap_px: int | None = None

    def validate(self) -> None:
        """Raise ``InputError`` unless the tile size is 0 or a positive multiple of 8 and the overlap below half."""
        if self.tile_size_px != AUTO_TILE:
            check_size(self.tile_size_px, "tile size",
                       note=", or 0 (the default) for the patch size the model was trained on")
        if self.overlap_px is None:
            return
        if self.overlap_px < 0 or (self.tile_size_px != AUTO_TILE and 2 * self.overlap_px >= self.tile_size_px):
            raise InputError(
                f"The overlap {self.overlap_px} px must be at least 0 and less than half the tile size "
                f"({self.tile_size_px} px). Use e.g. {max(self.tile_size_px, 0) // 8} px, or leave it unset."
            )

    @property
    def step_px(self) -> int:
        """How far one tile advances past the previous one."""
        return self.tile_size_px - self.overlap_px


@dataclass(frozen=True)
class Tile:
    """One tile, in pixels of the region being predicted."""

    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def window(self) -> Window:
        """The tile as a rasterio window (relative to the region)."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices of the tile in a region-sized array."""
        return slice(self.row_off, self.row_off + self.height), slice(self.col_off, self.col_off + self.width)


def tile_extent(length_px: int, tile_size_px: int) -> int:
    """A tile's size along an axis: the tile size, or the whole axis when it is shorter."""
    return min(length_px, tile_size_px)


def plan_tiles(width: int, height: int, tile_size_px: int, overlap_px: int) -> list[Tile]:
    """All tiles covering a ``width`` x ``height`` region, row by row, left to right.

    Every tile has the same size (so tiles batch together), every pixel lies in at
    least one tile, and no tile reaches outside the region.
    """
    config = TilingConfig(tile_size_px, overlap_px)
    config.validate()
    if tile_size_px == AUTO_TILE:
        raise InputError("Tiles must have a size here; resolve the automatic tile size first (tile_choice).")
    th, tw = tile_extent(height, tile_size_px), tile_extent(width, tile_size_px)
    rows = axis_offsets(height, tile_size_px, config.step_px, short_axis="one")
    cols = axis_offsets(width, tile_size_px, config.step_px, short_axis="one")
    return [Tile(r, c, th, tw) for r in rows for c in cols]


def tile_rows(tiles: list[Tile]) -> list[list[Tile]]:
    """Tiles grouped by row offset, top to bottom (``plan_tiles`` order is kept)."""
    return [list(group) for _, group in groupby(tiles, key=lambda t: t.row_off)]


def ramp(length_px: int, ramp_px: int) -> np.ndarray:
    """A 1-D weight profile: a raised cosine rising over ``ramp_px`` at both ends, 1 in between.

    Sampled at pixel centres, so every weight is strictly positive (the blend is
    defined everywhere) and the profile is symmetric.
    """
    ramp_px = max(0, min(ramp_px, length_px // 2))
    weights = np.ones(length_px, dtype=np.float64)
    if ramp_px:
        centres = (np.arange(ramp_px) + 0.5) / ramp_px  # in (0, 1)
        rise = 0.5 - 0.5 * np.cos(np.pi * centres)
        weights[:ramp_px] = rise
        weights[length_px - ramp_px :] = rise[::-1]
    return weights


def blend_weights(height: int, width: int, ramp_px: int) -> np.ndarray:
    """The (height, width) float32 weight window of a tile: the outer product of two ramps."""
    return np.outer(ramp(height, ramp_px), ramp(width, ramp_px)).astype(np.float32)


class RowBand:
    """Weighted sums of per-class values for the rows the current tile row touches.

    Tiles add their weight-multiplied values and their weights; ``pop`` hands back
    finished rows (the ones no later tile row reaches) as weighted averages and
    frees their space, so memory holds one tile's height of the region's width.
    A no-data mask travels with the rows.
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.sums = np.zeros((channels, height, width), dtype=np.float32)
        self.weights = np.zeros((height, width), dtype=np.float32)
        self.nodata = np.zeros((height, width), dtype=bool)
        self.top = 0  # region row held in buffer row 0

    def set_nodata(self, row: int, mask: np.ndarray) -> None:
        """Record the no-data mask of region rows ``row`` .. ``row + len(mask)``."""
        r = row - self.top
        self.nodata[r : r + mask.shape[0]] = mask

    def add(self, weighted: np.ndarray, weights: np.ndarray, tile: Tile) -> None:
        """Add one tile's weight-multiplied values (channels, h, w) and its (h, w) weights."""
        rows, cols = tile.slices
        rows = slice(rows.start - self.top, rows.stop - self.top)
        self.sums[:, rows, cols] += weighted
        self.weights[rows, cols] += weights

    def pop(self, until: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Finish region rows ``top`` .. ``until``: (first row, weighted averages, no-data mask)."""
        n = until - self.top
        first = self.top
        averages = self.sums[:, :n] / np.maximum(self.weights[:n], np.float32(1e-12))
        nodata = self.nodata[:n].copy()
        held = self.weights.shape[0]
        for buf in (self.sums, self.weights, self.nodata):  # rows shift up; numpy copies overlaps safely
            buf[..., : held - n, :] = buf[..., n:, :]
            buf[..., held - n :, :] = 0
        self.top = until
        return first, averages, nodata
