"""The colour lookup and majority baselines: fitted on patches, scored on another scene's grid."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.model_core.evaluation.baselines import ColourLookup, baseline_confusions, colour_keys, fit_lookup

PROFILE = dict(driver="GTiff", crs="EPSG:32633", transform=from_origin(400000, 5000000, 10, 10))


def write(path, data, dtype="uint8"):
    data = np.asarray(data)
    bands = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0], dtype=dtype,
                       **PROFILE) as dst:
        dst.write(bands.astype(dtype))
    return path


def test_colour_keys_quantise_each_channel_to_32_levels():
    unit = np.array([[[0.0, 1.0, 0.5]], [[0.0, 1.0, 0.031]], [[0.0, 1.0, 0.032]]], np.float32)
    keys = colour_keys(unit)
    assert keys.tolist() == [[0, 32**3 - 1, (16 * 32 + 0) * 32 + 1]]


def test_lookup_answers_the_most_frequent_code_per_colour_and_the_majority_elsewhere():
    lookup = ColourLookup()
    unit = np.zeros((3, 1, 6), np.float32)
    unit[:, 0, 3:] = 0.9  # three bright pixels
    lookup.add(unit, np.array([[4, 4, 5, 9, 9, 0]]))  # dark: 4, 4, 5; bright: 9, 9 and one no data
    lookup.add(unit[:, :, :1], np.array([[4]]))
    assert lookup.majority == 4
    table = lookup.table()
    assert table[colour_keys(unit)].tolist() == [[4, 4, 4, 9, 9, 9]]
    unseen = np.full((3, 1, 1), 0.5, np.float32)
    assert table[colour_keys(unseen)].tolist() == [[4]]


def test_baseline_confusions_on_an_evaluation_scene(tmp_path):
    image = np.full((3, 4, 4), 10, np.uint8)  # left half dark
    image[:, :, 2:] = 250  # right half bright
    image[:, 1, 0] = 0  # no image data (all bands 0): Predict writes no data there, so it is not scored
    codes = np.full((4, 4), 4, np.uint8)
    codes[:, 2:] = 9
    codes[0, 3] = 0  # no data: not scored
    codes[3, 3] = 8  # a bright pixel the lookup calls 9
    patch_image, patch_mask = write(tmp_path / "p.tif", image), write(tmp_path / "m.tif", codes)
    lookup = fit_lookup([(patch_image, patch_mask)], 255.0)
    by_majority, by_lookup = baseline_confusions(patch_image, patch_mask, lookup)
    assert by_lookup.sum() == by_majority.sum() == 14
    assert by_lookup[3, 3] == 7 and by_lookup[8, 8] == 6 and by_lookup[7, 8] == 1  # index = code - 1
    assert by_majority[:, 3].sum() == 14 and by_majority[3, 3] == 7  # vegetation (7 of 14) is the majority


def test_scenes_are_read_with_the_training_patches_scale(tmp_path):
    # 16-bit reflectance: a multispectral patches set is scaled by 10000, true colour's rule for uint16 differs.
    image = np.full((3, 2, 2), 3000, np.uint16)  # reflectance 0.3 everywhere
    image[:, :, 1] = 9000  # right column 0.9
    codes = np.array([[4, 9], [4, 9]], np.uint8)
    patch_image, patch_mask = write(tmp_path / "p.tif", image, "uint16"), write(tmp_path / "m.tif", codes)
    lookup = fit_lookup([(patch_image, patch_mask)], 10000.0)
    assert lookup.scale == 10000.0
    _, by_lookup = baseline_confusions(patch_image, patch_mask, lookup)
    assert by_lookup[3, 3] == 2 and by_lookup[8, 8] == 2  # every pixel found in its own cell
