"""Band lists from L2A products (issue 18): presets, reflectance x 10000 with the offset, resampling, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scl_deeplab.model_core.data.l2a_bands import PRESETS, parse_band_list, reflectance_from_dn
from scl_deeplab.model_core.data.safe import PrepareConfig, prepare_l2a
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.tests.l2a_builders import NIR_SWIR, make_safe, zip_safe

SCL_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")


def expected_reflectance(dn: np.ndarray, offset: int) -> np.ndarray:
    """Reflectance x 10000 by integer arithmetic (quantification 10000): DN + offset, 0 for no data, else >= 1."""
    out = np.clip(dn.astype(np.int64) + offset, 1, 65535)
    out[dn == 0] = 0
    return out.astype(np.uint16)


def test_band_lists_and_presets():
    assert parse_band_list("B04, b03,B2") == ("B04", "B03", "B02")
    assert parse_band_list("SCL bands") == parse_band_list("scl") == SCL_BANDS == PRESETS["scl bands"]
    assert parse_band_list("true colour") == ("B04", "B03", "B02")
    assert parse_band_list("20m") == ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")
    assert parse_band_list("") == ()
    with pytest.raises(InputError, match="names B13, NIR, not L2A bands.*B8A.*presets?: true colour, scl bands, 20m"):
        parse_band_list("B04,B13,NIR")
    with pytest.raises(InputError, match="names a band twice"):
        parse_band_list("B04,B4")


def test_reflectance_rule():
    dn = np.array([0, 1, 999, 1000, 1001, 2250, 65535], dtype=np.uint16)
    assert reflectance_from_dn(dn, -1000, 10000).tolist() == [0, 1, 1, 1, 1, 1250, 64535]
    assert reflectance_from_dn(dn, 0, 10000).tolist() == [0, 1, 999, 1000, 1001, 2250, 65535]


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_scl_bands_at_20_m_are_reflectance_with_the_offset_named_by_band(tmp_path, layout):
    product = make_safe(tmp_path / "in", "04.00", extra_bands=NIR_SWIR)
    source = zip_safe(product) if layout == "zip" else product.path
    scene = prepare_l2a(source, tmp_path / "bands.tif", tmp_path / "scl.tif",
                        PrepareConfig(resolution_m=20, bands=SCL_BANDS, rows_per_band=7))
    with rasterio.open(scene.image) as img:
        assert (img.count, img.dtypes[0], img.nodata, img.descriptions) == (6, "uint16", 0.0, SCL_BANDS)
        pixels = img.read()
    for i, band in enumerate(SCL_BANDS):
        assert np.array_equal(pixels[i], expected_reflectance(product.arrays[(band, 20)], product.offsets[band])), band
    assert product.offsets["B02"] != product.offsets["B04"]  # a mix-up of bands would show


def test_at_10_m_20_m_bands_repeat_each_pixel(tmp_path):
    product = make_safe(tmp_path / "in", "02.14", extra_bands=NIR_SWIR)
    scene = prepare_l2a(product.path, tmp_path / "bands.tif", tmp_path / "scl.tif",
                        PrepareConfig(resolution_m=10, bands=("B04", "B8A")))
    with rasterio.open(scene.image) as img:
        red, nir = img.read()
        assert img.res == (10.0, 10.0) and img.descriptions == ("B04", "B8A")
    assert np.array_equal(red, expected_reflectance(product.arrays[("B04", 10)], 0))
    nearest = np.repeat(np.repeat(product.arrays[("B8A", 20)], 2, 0), 2, 1)
    assert np.array_equal(nir, expected_reflectance(nearest, 0))


def test_10_m_bands_are_averaged_over_their_valid_pixels(tmp_path):
    product = make_safe(tmp_path / "in", "04.00", resolutions=(10,))  # B02-B04 only at 10 m, SCL at 20 and 60 m
    scene = prepare_l2a(product.path, tmp_path / "bands.tif", tmp_path / "scl.tif",
                        PrepareConfig(resolution_m=20, bands=("B03",)))
    with rasterio.open(scene.image) as img:
        got = img.read(1)
    fine = expected_reflectance(product.arrays[("B03", 10)], product.offsets["B03"]).astype(np.int64)
    blocks = fine.reshape(30, 2, 30, 2)
    valid = (blocks > 0).sum(axis=(1, 3))
    mean = np.where(valid > 0, np.floor(blocks.sum(axis=(1, 3)) / np.maximum(valid, 1) + 0.5), 0)
    assert np.abs(got.astype(np.int64) - mean.astype(np.int64)).max() <= 1  # rounding of exact halves may differ
    assert fine[0, 0] == 0 and got[0, 0] == round((fine[0, 1] + fine[1, 0] + fine[1, 1]) / 3)  # no data left out


def test_bands_the_product_lacks_or_cannot_give_are_refused_and_nothing_written(tmp_path):
    product = make_safe(tmp_path / "in", "04.00", extra_bands=("B8A", "B09"))
    with pytest.raises(InputError, match="has no band B11; it has B02, B03, B04, B8A, B09"):
        prepare_l2a(product.path, tmp_path / "a.tif", tmp_path / "a_scl.tif",
                    PrepareConfig(resolution_m=20, bands=SCL_BANDS))
    with pytest.raises(InputError, match="holds B09 only at 60 m; at 10 m each of its pixels would be copied 36 times"
                                         ". Choose RESOLUTION 60, or leave B09 out"):
        prepare_l2a(product.path, tmp_path / "a.tif", tmp_path / "a_scl.tif",
                    PrepareConfig(resolution_m=10, bands=("B04", "B09")))
    assert not list(tmp_path.glob("a*"))
