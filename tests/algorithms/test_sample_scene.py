"""scldeeplab:samplescene through Processing and through the qgis_process wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from scl_deeplab.model_core import scl, styles


def _check_scene(image: Path, labels: Path, size: int) -> np.ndarray:
    with rasterio.open(image) as img, rasterio.open(labels) as lab:
        assert (img.count, img.width, img.height, img.dtypes[0]) == (3, size, size, "uint8")
        assert img.crs.to_epsg() == 32633 and img.transform == lab.transform
        codes = lab.read(1)
        assert lab.colormap(1)[6][:3] == scl.BY_CODE[6].rgb
    assert sorted(np.unique(codes)) == list(range(12))
    assert labels.with_suffix(".qml").read_text(encoding="utf-8") == styles.scl_qml()
    return codes


def test_samplescene_writes_both_rasters(provider, tmp_path):
    import processing

    result = processing.run(
        "scldeeplab:samplescene",
        {"SIZE": 128, "SEED": 3, "OUTPUT_IMAGE": str(tmp_path / "scene.tif"), "OUTPUT_SCL": str(tmp_path / "scl.tif")},
    )
    assert result["OUTPUT_IMAGE"] == str(tmp_path / "scene.tif")
    codes = _check_scene(tmp_path / "scene.tif", tmp_path / "scl.tif", 128)
    again = processing.run(
        "scldeeplab:samplescene",
        {"SIZE": 128, "SEED": 3, "OUTPUT_IMAGE": str(tmp_path / "b.tif"), "OUTPUT_SCL": str(tmp_path / "b_scl.tif")},
    )
    with rasterio.open(again["OUTPUT_SCL"]) as lab:
        assert np.array_equal(lab.read(1), codes)


def test_samplescene_through_qgis_process(qgis_process_json, tmp_path):
    results = qgis_process_json(
        "scldeeplab:samplescene",
        SIZE=160,
        SEED=1,
        OUTPUT_IMAGE=tmp_path / "scene.tif",
        OUTPUT_SCL=tmp_path / "scl.tif",
    )
    assert Path(results["OUTPUT_SCL"]) == tmp_path / "scl.tif"
    _check_scene(tmp_path / "scene.tif", tmp_path / "scl.tif", 160)
