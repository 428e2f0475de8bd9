"""The SCL class table and everything derived from it."""

from __future__ import annotations

import numpy as np
from scl_deeplab.model_core import scl


def test_table_has_codes_0_to_11_and_learns_11_classes():
    assert [c.code for c in scl.SCL_CLASSES] == list(range(12))
    assert scl.NUM_CLASSES == 11
    assert scl.learned_codes() == list(range(1, 12))


def test_code_to_index_ignores_no_data():
    codes = np.array([[0, 1, 11], [4, 0, 6]])
    idx = scl.code_to_index(codes)
    assert idx.tolist() == [[scl.IGNORE_INDEX, 0, 10], [3, scl.IGNORE_INDEX, 5]]
    assert scl.index_to_code(np.array([0, 10])).tolist() == [1, 11]


def test_unknown_codes_are_named():
    assert scl.unknown_codes(np.array([0, 4, 12, 15, 4])) == [12, 15]
    assert scl.unknown_codes(np.arange(12)) == []


def test_colormap_is_the_palette_with_transparent_no_data():
    cmap = scl.colormap()
    assert cmap[0] == (0, 0, 0, 0)
    assert cmap[4] == (0, 160, 0, 255)
    assert cmap[9] == (255, 255, 255, 255)
