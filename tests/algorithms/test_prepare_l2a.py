"""scldeeplab:preparel2a through Processing and through the qgis_process wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from scl_deeplab.model_core import scl, styles
from scl_deeplab.tests.l2a_builders import ORIGIN, expected_tci, make_safe, zip_safe


def test_preparel2a_bands_from_a_zip_with_extent(provider, tmp_path):
    import processing

    product = make_safe(tmp_path / "in", "04.00", resolutions=(20,), scl_resolutions=(20,))
    left, top = ORIGIN[0] + 200, ORIGIN[1] - 100
    extent = f"{left},{left + 300},{top - 200},{top} [EPSG:32632]"  # 15 x 10 px at 20 m
    result = processing.run("scldeeplab:preparel2a", {
        "INPUT": str(zip_safe(product)), "SOURCE": 1, "RESOLUTION": "20", "EXTENT": extent,
        "OUTPUT_IMAGE": str(tmp_path / "rgb.tif"), "OUTPUT_SCL": str(tmp_path / "scl.tif"),
    })
    with rasterio.open(result["OUTPUT_IMAGE"]) as img, rasterio.open(result["OUTPUT_SCL"]) as labels:
        assert (img.width, img.height, img.count) == (15, 10, 3)
        assert (img.bounds.left, img.bounds.top) == (left, top) and img.transform == labels.transform
        red, codes = img.read(1), labels.read(1)
        assert labels.colormap(1)[4][:3] == scl.BY_CODE[4].rgb
    assert np.array_equal(red, expected_tci(product.arrays[("B04", 20)], -1200)[5:15, 10:25])
    assert np.array_equal(codes, product.arrays[("SCL", 20)][5:15, 10:25])
    assert (tmp_path / "scl.qml").read_text(encoding="utf-8") == styles.scl_qml()


def test_preparel2a_explains_a_missing_resolution(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    product = make_safe(tmp_path, "02.14", resolutions=(60,), scl_resolutions=(60,))
    with pytest.raises(QgsProcessingException, match="has no TCI at 10 m; it has TCI at 60 m"):
        processing.run("scldeeplab:preparel2a", {
            "INPUT": str(product.path), "RESOLUTION": "10",
            "OUTPUT_IMAGE": str(tmp_path / "rgb.tif"), "OUTPUT_SCL": str(tmp_path / "scl.tif"),
        })
    assert not list(tmp_path.glob("*.tif"))


def test_preparel2a_through_qgis_process(qgis_process_json, tmp_path):
    product = make_safe(tmp_path, "02.06", resolutions=(60,), scl_resolutions=(20,))
    results = qgis_process_json(
        "scldeeplab:preparel2a", INPUT=product.path, SOURCE=0, RESOLUTION=60,
        OUTPUT_IMAGE=tmp_path / "rgb.tif", OUTPUT_SCL=tmp_path / "scl.tif",
    )
    assert Path(results["OUTPUT_SCL"]) == tmp_path / "scl.tif"
    with rasterio.open(tmp_path / "rgb.tif") as img, rasterio.open(tmp_path / "scl.tif") as labels:
        assert np.array_equal(img.read(), product.arrays[("TCI", 60)])
        assert np.array_equal(labels.read(1), product.arrays[("SCL", 20)][1::3, 1::3])


def test_preparel2a_band_list_preset_then_makepatches_reads_the_names(provider, tmp_path):
    """Issue 18: BAND_LIST "SCL bands" gives six named reflectance bands that Make patches records by name."""
    import json

    import processing
    from qgis.core import QgsProcessingException
    from scl_deeplab.tests.l2a_builders import NIR_SWIR

    product = make_safe(tmp_path / "in", "04.00", extra_bands=NIR_SWIR, seed=1)
    result = processing.run("scldeeplab:preparel2a", {
        "INPUT": str(product.path), "RESOLUTION": "20", "BAND_LIST": "SCL bands",
        "OUTPUT_IMAGE": str(tmp_path / "bands.tif"), "OUTPUT_SCL": str(tmp_path / "scl.tif"),
    })
    with rasterio.open(result["OUTPUT_IMAGE"]) as img:
        assert img.descriptions == ("B02", "B03", "B04", "B8A", "B11", "B12") and img.dtypes[0] == "uint16"
        assert np.array_equal(img.read(4)[1:, 3:], product.arrays[("B8A", 20)][1:, 3:].astype(np.int64).clip(1001)
                              - 1000)  # offset -1000 applied; the first row's edge cases are in test_l2a_bands
    processing.run("scldeeplab:makepatches", {
        "INPUT": result["OUTPUT_IMAGE"], "MASK": result["OUTPUT_SCL"], "BANDS": "1,2,3,4,5,6", "PATCH_SIZE": 8,
        "MIN_VALID_FRACTION": 0.1, "OUTPUT_FOLDER": str(tmp_path / "patches")})
    manifest = json.loads((tmp_path / "patches" / "index.json").read_text(encoding="utf-8"))
    assert manifest["band_names"] == ["B02", "B03", "B04", "B8A", "B11", "B12"] and manifest["input_scale"] == 10000
    with pytest.raises(QgsProcessingException, match="names B13, not L2A bands"):
        processing.run("scldeeplab:preparel2a", {
            "INPUT": str(product.path), "BAND_LIST": "B04,B13",
            "OUTPUT_IMAGE": str(tmp_path / "x.tif"), "OUTPUT_SCL": str(tmp_path / "x_scl.tif")})
    assert not (tmp_path / "x.tif").exists()
