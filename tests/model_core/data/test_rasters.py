"""Shared raster IO: SCL GeoTIFFs with colours, grids brought together, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.model_core.data.rasters import check_scl_codes, onto_grid, open_raster, write_scl
from scl_deeplab.model_core.errors import GridError, MaskCodeError, RasterReadError


def _profile(width, height, x0=500000.0, y0=5000000.0, res=20.0, crs="EPSG:32633"):
    return {"width": width, "height": height, "crs": crs, "transform": from_origin(x0, y0, res, res)}


def test_write_scl_embeds_the_colour_table(tmp_path):
    path = tmp_path / "scl.tif"
    codes = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_scl(path, codes, _profile(4, 3))
    with rasterio.open(path) as src:
        assert src.read(1).tolist() == codes.tolist()
        assert src.colormap(1)[6] == (0, 0, 255, 255)
        assert src.nodata == 0
        assert src.crs.to_epsg() == 32633


def test_coarser_grid_is_brought_onto_finer_with_nearest(tmp_path):
    coarse = tmp_path / "scl40.tif"
    write_scl(coarse, np.array([[4, 6], [8, 11]], np.uint8), _profile(2, 2, res=40.0))
    fine = tmp_path / "img.tif"
    write_scl(fine, np.zeros((4, 4), np.uint8), _profile(4, 4, res=20.0))
    with rasterio.open(fine) as like, onto_grid(coarse, like) as vrt:
        got = vrt.read(1)
    assert got.tolist() == [[4, 4, 6, 6], [4, 4, 6, 6], [8, 8, 11, 11], [8, 8, 11, 11]]


def test_disjoint_rasters_are_refused(tmp_path):
    a = tmp_path / "a.tif"
    b = tmp_path / "b.tif"
    write_scl(a, np.ones((4, 4), np.uint8), _profile(4, 4))
    write_scl(b, np.ones((4, 4), np.uint8), _profile(4, 4, x0=600000.0))
    with rasterio.open(a) as like, pytest.raises(GridError, match="does not overlap"):
        with onto_grid(b, like):
            pass


def test_unknown_codes_are_named_in_the_message():
    with pytest.raises(MaskCodeError, match="codes 12, 200 are not SCL codes"):
        check_scl_codes(np.array([0, 4, 12, 200]), "mask.tif")


def test_unreadable_raster_is_a_clear_error(tmp_path):
    bogus = tmp_path / "bogus.tif"
    bogus.write_text("not a raster")
    with pytest.raises(RasterReadError, match="Cannot read the raster"):
        with open_raster(bogus):
            pass
