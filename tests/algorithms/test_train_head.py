"""scldeeplab:trainhead through Processing (on makepatches output) and through the qgis_process wrapper."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.tests.recording import RecordingFeedback
from scl_deeplab.tests.sample_patches import sample_patches


@pytest.fixture(scope="module")
def patches(provider, tmp_path_factory) -> Path:
    """samplescene then makepatches, as a user chains them: 32 px patches of a 96 px scene."""
    made = sample_patches(tmp_path_factory.mktemp("trainhead"), 96, 7)
    assert made["TRAIN_COUNT"] >= 4 and made["VAL_COUNT"] >= 1
    return Path(made["OUTPUT_INDEX"])


@pytest.fixture()
def no_weights(tmp_path, monkeypatch) -> Path:
    """A TORCH_HOME without torchvision's files, whatever this machine has."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def params(patches: Path, folder: Path, **overrides) -> dict:
    values = {
        "PATCHES": str(patches), "EPOCHS": 2, "BATCH_SIZE": 4, "LEARNING_RATE": 0.001, "PRETRAINED": "none",
        "CLASS_WEIGHTS": True, "DEVICE": "cpu", "SEED": 1,
        "OUTPUT_MODEL": str(folder / "head.pt"), "OUTPUT_CURVES": str(folder / "head.png"),
    }
    values.update(overrides)
    return values


def test_trainhead_writes_checkpoints_curves_and_scores(provider, patches, tmp_path, no_weights):
    import processing

    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:trainhead", params(patches, tmp_path), feedback=feedback)

    assert result["OUTPUT_MODEL"] == str(tmp_path / "head.pt")
    assert result["LAST_MODEL"] == str(tmp_path / "head.last.pt")
    assert result["BEST_EPOCH"] in (1, 2)
    assert 0.0 <= result["MIOU"] <= 1.0 and 0.0 <= result["PIXEL_ACCURACY"] <= 1.0
    model, meta = checkpoint.load_model(result["OUTPUT_MODEL"], "cpu")
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32))["out"].shape == (2, 11, 32, 32)
    assert meta["stages"][0]["stage"] == "head" and meta["stages"][0]["class_weights"] is True
    assert meta["weights_source"]["kind"] == "none" and meta["patch_size"] == 32
    best = max(meta["history"], key=lambda row: row["mean_iou"])
    # The outputs are the best epoch's validation scores (mIoU may exceed pixel accuracy: no law orders them).
    assert result["MIOU"] == pytest.approx(best["mean_iou"])
    assert result["PIXEL_ACCURACY"] == pytest.approx(best["pixel_accuracy"])
    assert result["BEST_EPOCH"] == best["epoch"] == meta["epoch"]
    with open(result["OUTPUT_HISTORY"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["stage"] == "head"
    assert Path(result["OUTPUT_CURVES"]).read_bytes()[:4] == b"\x89PNG"
    epoch_lines = [line for line in feedback.infos if line.startswith("Epoch ")]
    assert len(epoch_lines) == 2 and "mIoU" in epoch_lines[1] and epoch_lines[1].split()[-1] in ("s", "saved")
    assert any(0 < p < 50 for p in feedback.percents) and max(feedback.percents) == 100


def test_trainhead_crop_reaches_training_and_the_checkpoint(provider, patches, tmp_path, no_weights):
    import processing

    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:trainhead", params(patches, tmp_path, EPOCHS=1, CROP=16, PRETRAINED="none",
                                                           CLASS_WEIGHTS=False), feedback=feedback)
    meta = checkpoint.load_checkpoint(result["OUTPUT_MODEL"])["meta"]
    assert meta["patch_size"] == 16 and meta["stages"][0]["crop_px"] == 16 and list(meta["aspp_rates"]) == [1, 2, 3]
    assert any("random 16 px crops of the 32 px patches" in line for line in feedback.infos)


def test_trainhead_missing_coco_weights_is_a_clear_error(provider, patches, tmp_path, no_weights):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=r"deeplabv3_resnet50_coco-cd0a2569\.pth in the folder .*WEIGHTS_FILE"):
        processing.run("scldeeplab:trainhead", params(patches, tmp_path, PRETRAINED="coco"))
    assert not (tmp_path / "head.pt").exists()


def test_trainhead_empty_manifest_is_a_clear_error(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    manifest = tmp_path / "index.json"
    manifest.write_text('{"format": "scl-deeplab-patches", "version": 1, "patch_size": 32, "patches": []}')
    with pytest.raises(QgsProcessingException, match="lists no patches"):
        processing.run("scldeeplab:trainhead", params(manifest, tmp_path))


def test_trainhead_through_qgis_process(patches, tmp_path, qgis_process_json):
    result = qgis_process_json(
        "scldeeplab:trainhead", PATCHES=patches, EPOCHS=1, BATCH_SIZE=4, PRETRAINED="none", DEVICE="cpu",
        OUTPUT_MODEL=tmp_path / "q.pt", OUTPUT_CURVES=tmp_path / "q.png",
    )
    assert result["OUTPUT_MODEL"] == str(tmp_path / "q.pt") and result["BEST_EPOCH"] == 1
    assert 0.0 <= float(result["MIOU"]) <= 1.0
    meta = checkpoint.load_checkpoint(tmp_path / "q.pt")["meta"]
    assert [row["epoch"] for row in meta["history"]] == [1]
    assert (tmp_path / "q.png").is_file() and (tmp_path / "q.history.json").is_file()


def test_trainhead_through_qgis_process_without_learning_curves(patches, tmp_path, qgis_process_json):
    # OUTPUT_CURVES is a secondary output: qgis_process must accept a call without it.
    result = qgis_process_json(
        "scldeeplab:trainhead", PATCHES=patches, EPOCHS=1, BATCH_SIZE=4, PRETRAINED="none", DEVICE="cpu",
        OUTPUT_MODEL=tmp_path / "q.pt",
    )
    assert result["OUTPUT_MODEL"] == str(tmp_path / "q.pt") and result["BEST_EPOCH"] == 1
    assert result["OUTPUT_CURVES"] == str(tmp_path / "q_curves.png")  # beside the checkpoint, as the CLI does
    assert (tmp_path / "q_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "q_curves.history.csv").is_file()
