"""Tile planning and blend weights, checked exhaustively over many scene sizes."""

from __future__ import annotations

import numpy as np
import pytest
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.prediction.tiling import (
    RowBand,
    TilingConfig,
    blend_weights,
    plan_tiles,
    ramp,
    tile_rows,
)

SIZES = [1, 7, 63, 64, 65, 100, 111, 112, 113, 128, 129, 200, 300, 500]


@pytest.mark.parametrize("tile,overlap", [(64, 0), (64, 8), (64, 31), (128, 16), (512, 64)])
def test_every_pixel_is_covered_and_no_tile_leaves_the_scene(tile, overlap):
    for height in SIZES:
        for width in SIZES:
            tiles = plan_tiles(width, height, tile, overlap)
            counts = np.zeros((height, width), int)
            for t in tiles:
                assert t.row_off >= 0 and t.col_off >= 0
                assert t.row_off + t.height <= height and t.col_off + t.width <= width
                assert (t.height, t.width) == (min(tile, height), min(tile, width))
                counts[t.slices] += 1
            assert (counts >= 1).all(), (width, height)


def test_tile_rows_group_by_row_in_order():
    tiles = plan_tiles(300, 200, 128, 16)
    rows = tile_rows(tiles)
    assert [r[0].row_off for r in rows] == [0, 72]
    assert all(len(r) == 3 for r in rows)
    assert [t.col_off for t in rows[0]] == [0, 112, 172]


@pytest.mark.parametrize("length,ramp_px", [(1, 0), (1, 5), (7, 3), (64, 8), (64, 32), (64, 40), (512, 64)])
def test_ramp_is_positive_symmetric_and_at_most_one(length, ramp_px):
    w = ramp(length, ramp_px)
    assert w.shape == (length,)
    assert (w > 0).all() and (w <= 1).all()
    np.testing.assert_allclose(w, w[::-1])
    if ramp_px and length > 2 * ramp_px:
        assert w[length // 2] == 1.0
        assert (np.diff(w[:ramp_px]) > 0).all()  # smooth rise, no steps back


def test_blend_weights_are_positive_everywhere_and_fade_at_edges():
    w = blend_weights(64, 96, 16)
    assert w.shape == (64, 96) and w.dtype == np.float32
    assert (w > 0).all()
    assert w[32, 48] == 1.0
    assert w[0, 0] < 0.01 and w[0, 0] == w[-1, -1]


def test_two_tiles_overlapping_by_the_ramp_weigh_exactly_one_across_the_seam():
    # Raised-cosine ramps are complementary: where one tile fades out the other fades in,
    # so the total weight is flat (1) from one tile's interior to the other's.
    w = ramp(64, 16)
    total = np.zeros(112)
    total[:64] += w
    total[48:] += w
    np.testing.assert_allclose(total[16:96], 1.0, atol=1e-12)


@pytest.mark.parametrize(
    "tile,overlap,match",
    [(60, 8, "multiple of 8"), (-8, 0, "multiple of 8"), (64, 32, "less than half"), (64, -1, "at least 0"),
     (0, -1, "at least 0")],
)
def test_bad_tile_size_or_overlap_is_refused(tile, overlap, match):
    with pytest.raises(InputError, match=match):
        TilingConfig(tile, overlap).validate()
    with pytest.raises(InputError):
        plan_tiles(100, 100, tile, overlap)


def test_tile_size_0_means_as_trained_and_must_be_resolved_before_planning():
    TilingConfig().validate()
    TilingConfig(0, 64).validate()  # checked against the tile size once the model says it (tile_choice)
    assert TilingConfig() == TilingConfig(0, None)
    with pytest.raises(InputError, match="resolve the automatic tile size"):
        plan_tiles(100, 100, 0, 0)


@pytest.mark.parametrize("width,height,tile,overlap", [(150, 130, 64, 16), (40, 200, 32, 8), (30, 20, 64, 8)])
def test_row_band_gives_the_weighted_average_of_every_tile_while_holding_one_tile_of_rows(width, height, tile, overlap):
    rng = np.random.default_rng(0)
    tiles = plan_tiles(width, height, tile, overlap)
    th, tw = tiles[0].height, tiles[0].width
    w = blend_weights(th, tw, overlap)
    values = {t: rng.random((2, th, tw)).astype(np.float32) for t in tiles}
    # Whole-region reference: sum of weighted values over sum of weights.
    sums, weights = np.zeros((2, height, width)), np.zeros((height, width))
    for t, v in values.items():
        sums[(slice(None), *t.slices)] += v * w
        weights[t.slices] += w
    expected = sums / weights
    band = RowBand(2, th, width)
    assert band.sums.shape == (2, th, width)  # memory: one tile's height, whatever the region's height
    got = np.full((2, height, width), np.nan)
    nodata = np.zeros((height, width), bool)
    for row in tile_rows(tiles):
        top = row[0].row_off
        if top > band.top:
            first, avg, mask = band.pop(top)
            got[:, first:top], nodata[first:top] = avg, mask
        band.set_nodata(top, np.arange(th * width).reshape(th, width) % 7 == 0)
        for t in row:
            band.add(values[t] * w, w, t)
    first, avg, mask = band.pop(height)
    got[:, first:], nodata[first:] = avg, mask
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert nodata.sum() > 0 and not nodata[0, 1] and nodata[0, 0]
