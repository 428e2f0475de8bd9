"""Tile size "as trained": chosen from the checkpoint's patch size, with warnings for tiles far from it."""

from __future__ import annotations

import pytest
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.prediction.tile_choice import choose_tiling, trained_patch_size
from scl_deeplab.model_core.prediction.tiling import TilingConfig


def test_default_is_the_patch_size_of_a_model_trained_on_small_patches():
    choice = choose_tiling(TilingConfig(), {"patch_size": 32})
    assert choice.tiling == TilingConfig(32, 4)
    assert choice.note == "Tiles of 32 px, the patch size this model was trained on."
    assert choice.warning is None


def test_default_is_512_for_large_patches_and_for_checkpoints_without_a_patch_size():
    large = choose_tiling(TilingConfig(), {"patch_size": 1024})
    assert large.tiling == TilingConfig(512, 64) and "1024 px patches" in large.note and large.warning is None
    old = choose_tiling(TilingConfig(), {})
    assert old.tiling == TilingConfig(512, 64) and old.warning is None
    assert "does not record the patch size" in old.note and "set TILE_SIZE" in old.note


def test_explicit_tile_far_above_a_small_patch_size_warns_why_and_what_to_do():
    choice = choose_tiling(TilingConfig(512), {"patch_size": 32})
    assert choice.tiling == TilingConfig(512, 64) and choice.note is None
    assert "16x the 32 px patches" in choice.warning and "taps 96, 192, 288 px away" in choice.warning
    assert "zero padding" in choice.warning and "ASPP_RATES auto" in choice.warning
    assert "TILE_SIZE 0" in choice.warning
    scaled = choose_tiling(TilingConfig(512), {"patch_size": 32, "aspp_rates": [1, 2, 3]})
    assert "image pooling" in scaled.warning


def test_warning_names_only_the_taps_a_patch_could_not_see():
    choice = choose_tiling(TilingConfig(1024), {"patch_size": 256})
    assert "4x the 256 px patches" in choice.warning and "taps 288 px away" in choice.warning


@pytest.mark.parametrize("tile,meta", [(64, {"patch_size": 32}), (512, {"patch_size": 256}),
                                       (1024, {"patch_size": 512}), (512, {})])
def test_no_warning_within_twice_the_patch_size_or_above_the_reach(tile, meta):
    assert choose_tiling(TilingConfig(tile, 8), meta).warning is None


def test_overlap_scales_with_the_tile_unless_given():
    assert choose_tiling(TilingConfig(256), {}).tiling == TilingConfig(256, 32)
    assert choose_tiling(TilingConfig(0, 2), {"patch_size": 32}).tiling == TilingConfig(32, 2)
    with pytest.raises(InputError, match=r"less than half the tile size \(32 px, the patch size this model"):
        choose_tiling(TilingConfig(0, 64), {"patch_size": 32})


def test_patch_size_is_read_only_when_it_is_a_positive_whole_number():
    assert [trained_patch_size(m) for m in ({"patch_size": 32}, {}, {"patch_size": 0}, {"patch_size": "32"},
                                            {"patch_size": True})] == [32, None, None, None, None]
