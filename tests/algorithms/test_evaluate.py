"""scldeeplab:evaluate through Processing and the qgis_process wrapper; bad input leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer
from rasterio.transform import from_origin

CRS = "EPSG:32633"
X0, Y0, PX = 399960.0, 5000040.0, 20.0
REF = np.array([[4, 4, 4, 4, 0], [4, 4, 6, 6, 0], [6, 6, 6, 9, 9], [9, 9, 9, 9, 9]], dtype=np.uint8)
PRED = np.array([[4, 4, 4, 6, 4], [4, 0, 6, 6, 6], [6, 4, 6, 9, 9], [9, 9, 8, 9, 9]], dtype=np.uint8)
# By hand (see tests/model_core/test_evaluate.py): 17 pixels compared, 14 agree.
ACCURACY = 14 / 17
PE = (5 * 5 + 5 * 5 + 7 * 6) / 17**2
KAPPA = (ACCURACY - PE) / (1 - PE)
MIOU = (4 / 6 + 4 / 6 + 6 / 7 + 0) / 4
OUTPUT_NAMES = {
    "OUTPUT_REPORT": "report.html",
    "OUTPUT_MATRIX": "matrix.csv",
    "OUTPUT_MATRIX_PNG": "matrix.png",
    "OUTPUT_DISAGREEMENT": "disagreement.tif",
    "OUTPUT_FIGURE": "figure.png",
    "OUTPUT_METRICS": "metrics.json",
}


def write_codes(path: Path, codes: np.ndarray, x0: float = X0) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1,
                       dtype="uint8", crs=CRS, transform=from_origin(x0, Y0, PX, PX), nodata=0) as dst:
        dst.write(codes, 1)
    return str(path)


def outputs(folder: Path) -> dict[str, str]:
    return {key: str(folder / name) for key, name in OUTPUT_NAMES.items()}


def run(params: dict, **kwargs) -> dict:
    import processing

    return processing.run("scldeeplab:evaluate", params, **kwargs)


def test_evaluate_returns_numbers_and_writes_every_output(provider, tmp_path):
    out = tmp_path / "out"
    result = run({"PREDICTION": write_codes(tmp_path / "pred.tif", PRED),
                  "REFERENCE": write_codes(tmp_path / "ref.tif", REF), **outputs(out)})
    assert result["PIXEL_ACCURACY"] == pytest.approx(ACCURACY)
    assert result["MIOU"] == pytest.approx(MIOU)
    assert result["KAPPA"] == pytest.approx(KAPPA)
    for key, name in OUTPUT_NAMES.items():
        assert result[key] == str(out / name) and (out / name).stat().st_size > 0
    assert json.loads((out / "metrics.json").read_text())["pixels"] == 17
    layer = QgsRasterLayer(result["OUTPUT_DISAGREEMENT"], "disagreement")
    assert layer.renderer().type() == "paletted"
    with rasterio.open(result["OUTPUT_DISAGREEMENT"]) as dis:
        assert int(np.count_nonzero(dis.read(1))) == 3


def test_only_the_report_when_other_outputs_are_skipped(provider, tmp_path):
    result = run({"PREDICTION": write_codes(tmp_path / "pred.tif", PRED),
                  "REFERENCE": write_codes(tmp_path / "ref.tif", REF),
                  "OUTPUT_REPORT": str(tmp_path / "report.html")})
    assert result["MIOU"] == pytest.approx(MIOU)
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml"))  # QGIS's own sidecars
    assert written == ["pred.tif", "ref.tif", "report.html"]
    assert result["OUTPUT_MATRIX"] is None and result["OUTPUT_DISAGREEMENT"] is None


def test_numbers_alone_when_every_file_output_is_skipped(provider, tmp_path):
    result = run({"PREDICTION": write_codes(tmp_path / "pred.tif", PRED),
                  "REFERENCE": write_codes(tmp_path / "ref.tif", REF)})
    assert result["KAPPA"] == pytest.approx(KAPPA) and result["OUTPUT_REPORT"] is None


def test_extent_and_image(provider, tmp_path):
    rgb = np.random.default_rng(0).integers(1, 255, size=(3, 4, 5), dtype=np.uint8)
    with rasterio.open(tmp_path / "img.tif", "w", driver="GTiff", width=5, height=4, count=3, dtype="uint8",
                       crs=CRS, transform=from_origin(X0, Y0, PX, PX)) as dst:
        dst.write(rgb)
    extent = f"{X0},{X0 + 5 * PX},{Y0 - 2 * PX},{Y0} [{CRS}]"  # the top two rows
    result = run({"PREDICTION": write_codes(tmp_path / "pred.tif", PRED),
                  "REFERENCE": write_codes(tmp_path / "ref.tif", REF), "EXTENT": extent,
                  "IMAGE": str(tmp_path / "img.tif"), **outputs(tmp_path / "out")})
    assert result["PIXEL_ACCURACY"] == pytest.approx(6 / 7)
    with rasterio.open(result["OUTPUT_DISAGREEMENT"]) as dis:
        assert dis.shape == (2, 5)


@pytest.mark.parametrize("case", ["codes", "overlap", "output", "unreadable"])
def test_bad_input_gets_a_clear_message_and_leaves_no_file(provider, tmp_path, case):
    pred = write_codes(tmp_path / "pred.tif", PRED)
    ref = write_codes(tmp_path / "ref.tif", REF)
    params = {"PREDICTION": pred, "REFERENCE": ref, **outputs(tmp_path / "out")}
    if case == "codes":
        bad = REF.copy()
        bad[0, 0] = 13
        params["REFERENCE"], message = write_codes(tmp_path / "bad.tif", bad), "codes 13 are not SCL codes"
    elif case == "overlap":
        params["REFERENCE"], message = write_codes(tmp_path / "far.tif", REF, x0=X0 + 50_000), "does not overlap"
    elif case == "unreadable":
        (tmp_path / "broken.tif").write_text("not a raster")
        params["REFERENCE"], message = str(tmp_path / "broken.tif"), "Cannot read the reference SCL .*broken.tif"
    else:
        (tmp_path / "blocker").write_text("a file where a folder should be")
        params["OUTPUT_METRICS"], message = str(tmp_path / "blocker" / "m.json"), "Choose another output path"
    with pytest.raises(QgsProcessingException, match=message):
        run(params)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cancel_leaves_no_file(provider, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run({"PREDICTION": write_codes(tmp_path / "pred.tif", PRED),
             "REFERENCE": write_codes(tmp_path / "ref.tif", REF), **outputs(tmp_path / "out")}, feedback=feedback)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_qgis_process_json_returns_the_evaluation_numbers(tmp_path, qgis_process_json):
    results = qgis_process_json(
        "scldeeplab:evaluate",
        PREDICTION=write_codes(tmp_path / "pred.tif", PRED),
        REFERENCE=write_codes(tmp_path / "ref.tif", REF),
        OUTPUT_REPORT=tmp_path / "report.html",
        OUTPUT_METRICS=tmp_path / "metrics.json",
    )
    assert results["PIXEL_ACCURACY"] == pytest.approx(ACCURACY)
    assert results["MIOU"] == pytest.approx(MIOU)
    assert results["KAPPA"] == pytest.approx(KAPPA)
    assert results["OUTPUT_REPORT"] == str(tmp_path / "report.html")
    assert json.loads((tmp_path / "metrics.json").read_text())["kappa"] == pytest.approx(KAPPA)
