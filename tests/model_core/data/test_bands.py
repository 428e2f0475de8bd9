"""Band lists: parsing BANDS, names from band descriptions, and matching a scene's bands with a model's."""

from __future__ import annotations

import pytest
from scl_deeplab.model_core.data import bands
from scl_deeplab.model_core.data.rasters import open_raster
from scl_deeplab.model_core.errors import BandCountError
from scl_deeplab.tests.multiband import write_multiband_scene


def test_sentinel2_names_are_normalised_and_others_are_not_names():
    assert [bands.sentinel2_name(t) for t in ("B4", "b04", "b8a", "B11", " B12 ", "B10")] == [
        "B04", "B04", "B8A", "B11", "B12", "B10"]
    assert [bands.sentinel2_name(t) for t in ("B13", "red", "", None, "2023-04-01")] == [None] * 5


def test_names_come_from_descriptions_and_unnamed_true_colour_stays_red_green_blue(tmp_path):
    image, _, _ = write_multiband_scene(tmp_path, 16)
    with open_raster(image) as src:
        assert bands.band_names(src, (3, 2, 1, 4, 5, 6)) == ("B04", "B03", "B02", "B8A", "B11", "B12")
        assert bands.by_name(src, ("red", "green", "blue")) == (3, 2, 1)
        assert bands.by_name(src, ("B8A", "B05")) is None
    plain, _, _ = write_multiband_scene(tmp_path / "plain", 16, names=("", "", "", "", "", ""))
    with open_raster(plain) as src:
        assert bands.band_names(src, (1, 2, 3)) == bands.RGB
        assert bands.band_names(src, (1, 2, 3, 4)) == ("band 1", "band 2", "band 3", "band 4")


def test_true_colour_and_where_red_green_blue_sit():
    assert bands.is_true_colour(bands.RGB) and bands.is_true_colour(("B04", "B03", "B02"))
    assert not bands.is_true_colour(("B02", "B03", "B04")) and not bands.is_true_colour(("B04", "B03", "B02", "B8A"))
    assert bands.rgb_positions(("B02", "B03", "B04", "B8A", "B11", "B12")) == (2, 1, 0)
    assert bands.rgb_positions(("B8A", "B11", "B12")) is None
    assert bands.display_positions(("B8A", "B11", "B12", "B05")) == (0, 1, 2)  # false colour


def test_mismatched_bands_are_refused_with_both_lists():
    model = ("B02", "B03", "B04", "B8A", "B11", "B12")
    bands.check_same(model, model, "scene", "")
    bands.check_same(bands.RGB, ("B04", "B03", "B02"), "scene", "")  # red, green, blue are B04, B03, B02
    bands.check_same(model, tuple(f"band {i}" for i in range(1, 7)), "scene", "")  # unnamed bands match any
    with pytest.raises(BandCountError, match=r"scene has 3 band\(s\) \(B02, B03, B04\), but 6 are expected "
                                             r"\(B02, B03, B04, B8A, B11, B12\)\. Fix it\."):
        bands.check_same(model, model[:3], "scene", "Fix it.")
    with pytest.raises(BandCountError, match=r"bands B04, B03, B02, B8A, B11, B12, but B02, B03, B04, B8A, B11, B12 "
                                             r"are expected \(the same bands in another order\)"):
        bands.check_same(model, ("B04", "B03", "B02", "B8A", "B11", "B12"), "scene", "")
    with pytest.raises(BandCountError, match=r"bands B05, B06, B07, but B8A, B11, B12 are expected\. $"):
        bands.check_same(("B8A", "B11", "B12"), ("B05", "B06", "B07"), "scene", "")
