"""Evaluation of a predicted SCL against a reference: numbers, grids, outputs, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.model_core.errors import Canceled, GridError, InputError, MaskCodeError, OutputError
from scl_deeplab.model_core.evaluation.evaluate import EvaluationOutputs, evaluate_scene, evaluate_to_files
from scl_deeplab.model_core.evaluation.report import row_normalised
from scl_deeplab.tests.recording import RecordingProgress

CRS = "EPSG:32633"
X0, Y0, PX = 399960.0, 5000040.0, 20.0

# Reference and prediction by hand: 4 x 5 pixels.
REF = np.array(
    [
        [4, 4, 4, 4, 0],
        [4, 4, 6, 6, 0],
        [6, 6, 6, 9, 9],
        [9, 9, 9, 9, 9],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [4, 4, 4, 6, 4],
        [4, 0, 6, 6, 6],
        [6, 4, 6, 9, 9],
        [9, 9, 8, 9, 9],
    ],
    dtype=np.uint8,
)
# Pixels compared (neither is 0): 20 - 2 (ref 0) - 1 (pred 0) = 17.
# veg(4): 5 reference pixels compared -> 4 right, 1 called water.
# water(6): 5 -> 4 right, 1 called vegetation.  cloud high(9): 7 -> 6 right, 1 called cloud medium(8).
EXPECTED = {(4, 4): 4, (4, 6): 1, (6, 6): 4, (6, 4): 1, (9, 9): 6, (9, 8): 1}


def write_codes(path: Path, codes: np.ndarray, *, x0: float = X0, y0: float = Y0, px: float = PX) -> Path:
    profile = dict(driver="GTiff", width=codes.shape[1], height=codes.shape[0], count=1, dtype=str(codes.dtype),
                   crs=CRS, transform=from_origin(x0, y0, px, px), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(codes, 1)
    return path


def all_outputs(folder: Path) -> EvaluationOutputs:
    return EvaluationOutputs(
        report=folder / "report.html",
        matrix_csv=folder / "matrix.csv",
        matrix_png=folder / "matrix.png",
        disagreement=folder / "disagreement.tif",
        figure=folder / "figure.png",
        metrics_json=folder / "metrics.json",
    )


def test_matrix_and_scores_match_the_hand_count(tmp_path):
    ev = evaluate_scene(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF))
    expected = np.zeros((11, 11), int)
    for (ref, pred), n in EXPECTED.items():
        expected[ref - 1, pred - 1] = n
    assert (ev.scores.matrix == expected).all()
    s = ev.scores
    assert s.pixel_accuracy == pytest.approx(14 / 17)
    assert s.iou[3] == pytest.approx(4 / 6)  # vegetation: tp 4, fn 1, fp 1
    assert s.iou[5] == pytest.approx(4 / 6)
    assert s.iou[8] == pytest.approx(6 / 7)
    assert s.iou[7] == 0.0  # cloud medium: predicted once, never in the reference
    assert s.mean_iou == pytest.approx((4 / 6 + 4 / 6 + 6 / 7 + 0) / 4)
    # kappa: po = 14/17; pe = (5*5 + 5*5 + 7*6 + 0*1) / 17^2
    pe = (25 + 25 + 42) / 289
    assert s.kappa == pytest.approx((14 / 17 - pe) / (1 - pe))
    assert ev.disagreeing_pixels == 3
    assert (ev.width, ev.height) == (5, 4)


def test_reference_on_another_grid_is_brought_onto_the_prediction_grid(tmp_path):
    # The reference at half the pixel size, starting 2 coarse pixels further west and north:
    # nearest resampling must give back exactly the hand-made grid.
    fine = np.zeros((2 * 4 + 4, 2 * 5 + 4), np.uint8)
    fine[4:, 4:] = np.kron(REF, np.ones((2, 2), np.uint8))
    ref = write_codes(tmp_path / "ref.tif", fine, x0=X0 - 2 * PX, y0=Y0 + 2 * PX, px=PX / 2)
    ev = evaluate_scene(write_codes(tmp_path / "pred.tif", PRED), ref)
    assert ev.scores.pixel_accuracy == pytest.approx(14 / 17)
    assert int(ev.scores.matrix.sum()) == 17


def test_extent_compares_only_that_window(tmp_path):
    # The top two rows only: left, bottom, right, top in the prediction's CRS.
    extent = (X0, Y0 - 2 * PX, X0 + 5 * PX, Y0)
    ev = evaluate_scene(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF),
                        extent=extent)
    assert (ev.width, ev.height) == (5, 2)
    assert int(ev.scores.matrix.sum()) == 7  # 10 pixels, minus 2 reference 0, minus 1 prediction 0
    assert ev.scores.pixel_accuracy == pytest.approx(6 / 7)  # only (4 -> 6) at row 0, column 3 is wrong


def test_every_output_is_written_with_the_numbers(tmp_path):
    pred, ref = write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF)
    out = all_outputs(tmp_path / "out")
    ev = evaluate_to_files(pred, ref, out)
    with rasterio.open(out.disagreement) as dis:
        assert dis.shape == (4, 5) and dis.transform == from_origin(X0, Y0, PX, PX) and dis.crs == CRS
        assert dis.colormap(1)[6] == (0, 0, 255, 255)
        codes = dis.read(1)
    expected = np.zeros_like(REF)
    expected[0, 3], expected[2, 1], expected[3, 2] = 4, 6, 9  # the reference's class where they differ
    assert (codes == expected).all()
    assert 'label="Reference 6 Water, predicted otherwise"' in out.disagreement.with_suffix(".qml").read_text()
    rows = list(csv.reader(out.matrix_csv.open()))
    assert rows[0][4] == "4 Vegetation" and rows[4][0] == "4 Vegetation"
    assert rows[4][4] == "4" and rows[4][6] == "1" and rows[4][-1] == "5"
    assert rows[-1][-1] == "17"
    metrics = json.loads(out.metrics_json.read_text())
    assert metrics["pixel_accuracy"] == pytest.approx(14 / 17) and metrics["pixels"] == 17
    assert metrics["kappa"] == pytest.approx(ev.scores.kappa)
    assert metrics["per_class"][3]["iou"] == pytest.approx(4 / 6)
    for png in (out.matrix_png, out.figure):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = out.report.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "0.824" in html and html.count("data:image/png;base64,") == 2
    assert "Water" in html and str(out.matrix_csv) in html
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "disagreement.qml", "disagreement.tif", "figure.png", "matrix.csv", "matrix.png", "metrics.json",
        "report.html",
    ]


def test_result_figure_with_the_true_colour_image(tmp_path):
    rgb = np.random.default_rng(0).integers(1, 255, size=(3, 4, 5), dtype=np.uint8)
    profile = dict(driver="GTiff", width=5, height=4, count=3, dtype="uint8", crs=CRS,
                   transform=from_origin(X0, Y0, PX, PX))
    with rasterio.open(tmp_path / "img.tif", "w", **profile) as dst:
        dst.write(rgb)
    out = EvaluationOutputs(figure=tmp_path / "with_image.png")
    evaluate_to_files(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF), out,
                      image=tmp_path / "img.tif")
    evaluate_to_files(tmp_path / "pred.tif", tmp_path / "ref.tif", EvaluationOutputs(figure=tmp_path / "without.png"))
    from PIL import Image

    wide, narrow = Image.open(tmp_path / "with_image.png").size, Image.open(tmp_path / "without.png").size
    assert wide[0] > narrow[0] * 1.3  # three panels instead of two


def test_row_normalised_matrix():
    m = np.zeros((11, 11))
    m[3, 3], m[3, 5] = 3, 1
    share = row_normalised(m)
    assert share[3, 3] == 0.75 and share[3, 5] == 0.25
    assert np.isnan(share[0]).all()


def assert_nothing_written(folder: Path) -> None:
    assert not folder.exists() or list(folder.iterdir()) == []


def test_reference_with_codes_outside_0_11_is_refused(tmp_path):
    bad = REF.copy()
    bad[3, 4] = 15
    with pytest.raises(MaskCodeError, match="codes 15 are not SCL codes"):
        evaluate_to_files(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", bad),
                          all_outputs(tmp_path / "out"))
    assert_nothing_written(tmp_path / "out")


def test_rasters_that_do_not_overlap_are_refused(tmp_path):
    far = write_codes(tmp_path / "ref.tif", REF, x0=X0 + 10_000)
    with pytest.raises(GridError, match="does not overlap"):
        evaluate_to_files(write_codes(tmp_path / "pred.tif", PRED), far, all_outputs(tmp_path / "out"))
    assert_nothing_written(tmp_path / "out")


def test_nothing_to_compare_is_refused(tmp_path):
    with pytest.raises(InputError, match="No pixel has a class in both"):
        evaluate_to_files(write_codes(tmp_path / "pred.tif", np.zeros_like(PRED)),
                          write_codes(tmp_path / "ref.tif", REF), all_outputs(tmp_path / "out"))
    assert_nothing_written(tmp_path / "out")


def test_unwritable_output_is_refused(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = EvaluationOutputs(report=tmp_path / "ok" / "report.html", matrix_csv=tmp_path / "blocker" / "m.csv")
    with pytest.raises(OutputError, match="Choose another output path"):
        evaluate_to_files(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF), out)
    assert_nothing_written(tmp_path / "ok")


def test_cancel_leaves_no_file(tmp_path):
    with pytest.raises(Canceled):
        evaluate_to_files(write_codes(tmp_path / "pred.tif", PRED), write_codes(tmp_path / "ref.tif", REF),
                          all_outputs(tmp_path / "out"), progress=RecordingProgress(canceled=True))
    assert_nothing_written(tmp_path / "out")


def test_large_raster_is_read_in_blocks(tmp_path, monkeypatch):
    from scl_deeplab.model_core.evaluation import evaluate

    monkeypatch.setattr(evaluate, "BLOCK_ROWS", 7)
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 12, size=(50, 40)).astype(np.uint8)
    pred = rng.integers(0, 12, size=(50, 40)).astype(np.uint8)
    out, progress = EvaluationOutputs(disagreement=tmp_path / "d.tif"), RecordingProgress()
    ev = evaluate_to_files(write_codes(tmp_path / "p.tif", pred), write_codes(tmp_path / "r.tif", ref), out,
                           progress=progress)
    from scl_deeplab.model_core.evaluation.metrics import confusion_from_codes

    assert (ev.scores.matrix == confusion_from_codes(ref, pred)).all()
    with rasterio.open(out.disagreement) as dis:
        differ = (ref != pred) & (ref > 0) & (pred > 0)
        assert (dis.read(1) == np.where(differ, ref, 0)).all()
    # 50 rows in blocks of at most 7 rows: eight blocks, one progress step each (on the first 70 % of the bar)
    assert progress.percents[:8] == pytest.approx([70 * (i + 1) / 8 for i in range(8)])
    assert progress.percents[8] > 70


def test_command_line_evaluates(tmp_path, capsys):
    from scl_deeplab.model_core.cli.main import main

    code = main(["evaluate", "--prediction", str(write_codes(tmp_path / "pred.tif", PRED)), "--reference",
                 str(write_codes(tmp_path / "ref.tif", REF)), "--metrics", str(tmp_path / "m.json")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pixel_accuracy"] == pytest.approx(14 / 17) and summary["metrics_json"] == str(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["pixels"] == 17


def test_full_disk_names_the_disagreement_raster_and_keeps_the_earlier_outputs(tmp_path):
    from scl_deeplab.tests.full_disk import fill, tiny_disk

    rng = np.random.default_rng(0)
    pred = write_codes(tmp_path / "pred.tif", rng.integers(1, 12, (600, 600), dtype=np.uint8))
    ref = write_codes(tmp_path / "ref.tif", rng.integers(1, 12, (600, 600), dtype=np.uint8))
    with tiny_disk(tmp_path / "disk", 1024) as disk:
        outputs = EvaluationOutputs(metrics_json=disk / "metrics.json", disagreement=disk / "disagreement.tif")
        (disk / "metrics.json").write_text("earlier")
        fill(disk, 32)  # the disagreement of random codes does not compress into 32 KiB
        with pytest.raises(OutputError, match=f"No space left on {disk} while writing disagreement.tif"):
            evaluate_to_files(pred, ref, outputs)
        assert (disk / "metrics.json").read_text() == "earlier"
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "metrics.json"]
