"""scldeeplab:finetunelayer4 through Processing and through the qgis_process wrapper."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(patches manifest, head checkpoint after one epoch) from a 96 px sample scene."""
    root = tmp_path_factory.mktemp("finetune")
    scene = make_sample_scene(root / "image.tif", root / "scl.tif", size=96, seed=3)
    index = make_patches(scene.image, scene.scl, root / "patches", PatchConfig(patch_size_px=32, preview_patches=0)).index
    config = TrainConfig(stage="head", epochs=1, batch_size=4, pretrained="none", device="cpu")
    head = train(index, config, root / "head.pt")
    return index, head.best_path


def params(trained: tuple[Path, Path], folder: Path, **overrides) -> dict:
    patches, model = trained
    values = {
        "MODEL": str(model), "PATCHES": str(patches), "EPOCHS": 1, "BATCH_SIZE": 4, "LEARNING_RATE": 0.0001,
        "UNFREEZE": "layer4", "DEVICE": "cpu", "OUTPUT_MODEL": str(folder / "l4.pt"),
        "OUTPUT_CURVES": str(folder / "l4.png"),
    }
    values.update(overrides)
    return values


def test_finetune_continues_the_history_and_trains_layer4_only(provider, trained, tmp_path):
    import processing

    result = processing.run("scldeeplab:finetunelayer4", params(trained, tmp_path))

    assert result["OUTPUT_MODEL"] == str(tmp_path / "l4.pt") and result["BEST_EPOCH"] == 2
    assert 0.0 <= result["MIOU"] <= 1.0
    head, tuned = checkpoint.load_checkpoint(trained[1]), checkpoint.load_checkpoint(result["OUTPUT_MODEL"])
    assert [(r["epoch"], r["stage"]) for r in tuned["meta"]["history"]] == [(1, "head"), (2, "layer4")]
    stages = [(s["stage"], s["first_epoch"], s["last_epoch"]) for s in tuned["meta"]["stages"]]
    assert stages == [("head", 1, 1), ("layer4", 2, 2)]
    assert tuned["meta"]["input"]["mean"] == head["meta"]["input"]["mean"]
    before, after = head["state_dict"], tuned["state_dict"]
    assert torch.equal(before["backbone.layer3.5.conv3.weight"], after["backbone.layer3.5.conv3.weight"])
    assert not torch.equal(before["backbone.layer4.2.conv3.weight"], after["backbone.layer4.2.conv3.weight"])
    with open(result["OUTPUT_HISTORY"], newline="") as f:
        assert [(r["epoch"], r["stage"]) for r in csv.DictReader(f)] == [("1", "head"), ("2", "layer4")]
    assert Path(result["OUTPUT_CURVES"]).read_bytes()[:4] == b"\x89PNG"


def test_finetune_rejects_a_model_that_is_not_a_checkpoint(provider, trained, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    bogus = tmp_path / "bogus.pt"
    torch.save({"weight": torch.zeros(2)}, bogus)
    with pytest.raises(QgsProcessingException, match="is a PyTorch file but not an SCL DeepLab checkpoint"):
        processing.run("scldeeplab:finetunelayer4", {**params(trained, tmp_path), "MODEL": str(bogus)})
    assert not (tmp_path / "l4.pt").exists()


def test_finetune_full_through_qgis_process(trained, tmp_path, qgis_process_json):
    result = qgis_process_json("scldeeplab:finetunelayer4", **params(trained, tmp_path, UNFREEZE="full"))
    assert result["OUTPUT_MODEL"] == str(tmp_path / "l4.pt") and int(result["BEST_EPOCH"]) == 2
    stages = checkpoint.load_checkpoint(tmp_path / "l4.pt")["meta"]["stages"]
    assert [s["stage"] for s in stages] == ["head", "full"]


def test_learning_curves_are_an_optional_output_made_by_default(provider):
    # qgis_process refuses a call that omits a non-optional output; the dialog still draws the curves.
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    curves = QgsApplication.processingRegistry().algorithmById("scldeeplab:finetunelayer4").parameterDefinition(
        "OUTPUT_CURVES")
    assert curves.flags() & QgsProcessingParameterDefinition.FlagOptional
    assert curves.createByDefault()
