"""Helpers base.py gives every algorithm: the unreadable-raster check and extent parameters as bounds and CRS."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingContext,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterLayer,
)
from rasterio.transform import from_origin
from scl_deeplab.algorithms.base import SclAlgorithm, crs_for_core


class Form(SclAlgorithm):
    """Just enough of an algorithm to call the shared helpers."""

    def name(self) -> str:
        return "form"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterRasterLayer("A", "A"))
        self.addParameter(QgsProcessingParameterRasterLayer("B", "B", optional=True))
        self.addParameter(QgsProcessingParameterExtent("EXTENT", "Extent", optional=True))


def _form() -> Form:
    form = Form()
    form.initAlgorithm()
    return form


def _raster(path) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(500000, 6000000, 10, 10)) as dst:
        dst.write(np.ones((1, 4, 4), np.uint8))
    return str(path)


def test_the_first_unreadable_raster_is_named_and_readable_or_missing_ones_pass(qgis_app, tmp_path):
    good = _raster(tmp_path / "good.tif")
    (tmp_path / "broken.tif").write_text("not a raster")
    form, context = _form(), QgsProcessingContext()
    names = {"A": "scene", "B": "SCL mask"}
    assert form.unreadable_raster({"A": good, "B": good}, context, names) is None
    assert form.unreadable_raster({"A": good}, context, names) is None  # an optional raster left out
    message = form.unreadable_raster({"A": good, "B": str(tmp_path / "broken.tif")}, context, names)
    assert message == f"Cannot read the SCL mask {tmp_path / 'broken.tif'}: check that the file exists and is a raster."


def test_extent_becomes_bounds_in_its_own_or_a_given_crs(qgis_app):
    form, context = _form(), QgsProcessingContext()
    params = {"EXTENT": "500000,500100,5999900,6000000 [EPSG:32633]"}
    assert form.extent_bounds(params, "EXTENT", context) == (500000, 5999900, 500100, 6000000)
    assert form.extent_crs(params, "EXTENT", context) == "EPSG:32633"
    lon_lat = form.extent_bounds(params, "EXTENT", context, QgsCoordinateReferenceSystem("EPSG:4326"))
    assert lon_lat[0] == pytest.approx(15.0, abs=0.01) and lon_lat[3] == pytest.approx(54.14, abs=0.01)
    assert form.extent_bounds({}, "EXTENT", context) is None
    assert form.extent_bounds({"EXTENT": None}, "EXTENT", context) is None


def test_crs_for_core_prefers_the_epsg_code_and_refuses_an_invalid_crs(qgis_app):
    assert crs_for_core(QgsCoordinateReferenceSystem("EPSG:4326")) == "EPSG:4326"
    assert crs_for_core(QgsCoordinateReferenceSystem()) is None
    custom = QgsCoordinateReferenceSystem.fromProj("+proj=laea +lat_0=52 +lon_0=10 +datum=WGS84")
    assert crs_for_core(custom).startswith(("PROJCRS", "PROJCS"))
