"""The multiple-of-8 size rule and window offsets along an axis, shared by patches and tiles."""

from __future__ import annotations

import numpy as np
import pytest
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.sizing import axis_offsets, check_size, is_valid_size, largest_size, size_suggestions


def test_offsets_step_by_tile_minus_overlap_and_last_tile_shifts_inward():
    assert axis_offsets(1000, 512, 448, short_axis="one") == [0, 448, 488]
    assert axis_offsets(960, 512, 448, short_axis="one") == [0, 448]  # exact fit: no duplicate last tile
    assert axis_offsets(512, 512, 448, short_axis="one") == [0]
    assert axis_offsets(100, 512, 448, short_axis="one") == [0]  # smaller than one tile


@pytest.mark.parametrize("length", [129, 241, 300, 1000, 5490])
def test_neighbouring_tiles_overlap_by_at_least_the_overlap(length):
    offsets = axis_offsets(length, 128, 128 - 16, short_axis="one")
    gaps = np.diff(offsets)
    assert (gaps > 0).all() and (gaps <= 112).all()  # overlap = 128 - gap >= 16
    assert offsets[-1] + 128 == length


def test_axis_offsets_move_the_last_patch_inward():
    assert axis_offsets(100, 32, 32) == [0, 32, 64, 68]
    assert axis_offsets(96, 32, 32) == [0, 32, 64]
    assert axis_offsets(100, 32, 24) == [0, 24, 48, 68]
    assert axis_offsets(32, 32, 8) == [0]


def test_a_patch_longer_than_the_axis_is_refused_but_a_tile_shrinks():
    with pytest.raises(InputError, match="A window of 64 px does not fit in 40 px"):
        axis_offsets(40, 64, 64)
    assert axis_offsets(40, 64, 64, short_axis="one") == [0]


@pytest.mark.parametrize("length,step,match", [(0, 8, "axis of 0 px"), (100, 0, "not 0"), (100, -4, "not -4")])
def test_empty_axis_or_step_is_refused_by_both_rules(length, step, match):
    for rule in ("one", "refuse"):
        with pytest.raises(InputError, match=match):
            axis_offsets(length, 32, step, short_axis=rule)


@pytest.mark.parametrize("length", range(1, 300, 7))
@pytest.mark.parametrize("size,step", [(32, 32), (32, 24), (64, 8), (128, 112)])
def test_offsets_cover_the_axis_inside_it_for_every_length(length, size, step):
    if size > length:
        assert axis_offsets(length, size, step, short_axis="one") == [0]
        return
    offsets = axis_offsets(length, size, step)
    covered = np.zeros(length, int)
    for off in offsets:
        covered[off : off + size] += 1
    assert (covered >= 1).all() and offsets[-1] + size == length
    assert offsets == sorted(set(offsets)) and (np.diff(offsets) <= step).all()


@pytest.mark.parametrize("size,valid", [(8, True), (512, True), (0, False), (-8, False), (4, False), (30, False)])
def test_sizes_are_positive_multiples_of_8(size, valid):
    assert is_valid_size(size) is valid


def test_a_bad_size_gets_the_two_nearest_multiples_and_a_note():
    assert size_suggestions(30) == (24, 32)
    assert size_suggestions(0) == (8, 16)
    message = r"^The tile size 60 px is not a positive multiple of 8; use e.g. 56 or 64 \(512 is the default\)\.$"
    with pytest.raises(InputError, match=message):
        check_size(60, "tile size", note=" (512 is the default)")
    check_size(64, "tile size")  # a good size passes


def test_largest_size_fits_the_axis():
    assert [largest_size(n) for n in (7, 8, 63, 64, 100)] == [0, 8, 56, 64, 96]
