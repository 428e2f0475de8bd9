"""Issue 18: a six-band scene through makepatches -> trainhead -> predict -> evaluate, headless via qgis_process,
and predict refusing a scene whose bands are not the model's."""

from __future__ import annotations

import json

import pytest
import rasterio
from scl_deeplab.tests.conftest import run_qgis_process
from scl_deeplab.tests.multiband import SCL_BANDS, write_multiband_scene


def test_six_band_scene_through_the_whole_workflow(tmp_path, qgis_process_json):
    image, scl, _ = write_multiband_scene(tmp_path / "scene", 96, seed=3)
    patches = qgis_process_json("scldeeplab:makepatches", INPUT=image, MASK=scl, BANDS="1,2,3,4,5,6", PATCH_SIZE=32,
                                VAL_FRACTION=0.3, OUTPUT_FOLDER=tmp_path / "patches")
    manifest = json.loads((tmp_path / "patches" / "index.json").read_text(encoding="utf-8"))
    assert manifest["band_names"] == list(SCL_BANDS) and patches["TRAIN_COUNT"] + patches["VAL_COUNT"] == 9
    assert (tmp_path / "patches" / "preview.png").stat().st_size > 0
    qgis_process_json("scldeeplab:trainhead", PATCHES=patches["OUTPUT_INDEX"], EPOCHS=1, BATCH_SIZE=2,
                      PRETRAINED="none", DEVICE="cpu", OUTPUT_MODEL=tmp_path / "model.pt",
                      OUTPUT_CURVES=tmp_path / "curves.png")
    qgis_process_json("scldeeplab:predict", INPUT=image, MODEL=tmp_path / "model.pt", OUTPUT=tmp_path / "pred.tif")
    with rasterio.open(tmp_path / "pred.tif") as out:
        assert (out.count, out.width, out.height) == (1, 96, 96)
        assert set(out.read(1).ravel()) <= set(range(1, 12))
    results = qgis_process_json("scldeeplab:evaluate", PREDICTION=tmp_path / "pred.tif", REFERENCE=scl, IMAGE=image,
                                OUTPUT_REPORT=tmp_path / "report.html", OUTPUT_METRICS=tmp_path / "metrics.json")
    assert 0.0 <= results["PIXEL_ACCURACY"] <= 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["pixel_accuracy"] == pytest.approx(
        results["PIXEL_ACCURACY"])
    # The same model on a scene holding only the first three of its bands: refused, both lists named, nothing written.
    three, _, _ = write_multiband_scene(tmp_path / "three", 32, names=SCL_BANDS[:3])
    proc = run_qgis_process("run", "scldeeplab:predict", "--", f"INPUT={three}", f"MODEL={tmp_path / 'model.pt'}",
                            f"OUTPUT={tmp_path / 'refused.tif'}")
    assert proc.returncode != 0
    assert "has 3 band(s) (B02, B03, B04), but the model expects 6 bands (B02, B03, B04, B8A, B11, B12)" in (
        proc.stdout + proc.stderr)
    assert not (tmp_path / "refused.tif").exists()
