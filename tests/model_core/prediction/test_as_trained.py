"""Issue 23: a model trained on 32 px patches predicts a scene as it was trained, with the default tile size.

A real DeepLabv3-ResNet50 is trained (full stage, from random weights, a few
epochs on a CPU) on 32 px Make patches output of a sample scene; prediction
then runs with the default tiling and with explicit ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.tests.recording import RecordingProgress

SIDE = 128
AGREEMENT = 0.99  # the target


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, RecordingProgress]:
    """The sample scene, a model trained on its 32 px patches, and what making patches and training logged."""
    from scl_deeplab.model_core.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("as_trained")
    scene = make_sample_scene(root / "image.tif", root / "scl.tif", size=SIDE, seed=2)
    lines = RecordingProgress()
    patches = make_patches(scene.image, scene.scl, root / "patches",
                           PatchConfig(patch_size_px=32, val_fraction=0.2, preview_patches=0), progress=lines)
    torch.manual_seed(0)
    # Class weights keep a briefly trained model from settling on the commonest class.
    config = TrainConfig(stage="full", epochs=8, batch_size=4, learning_rate=1e-3, class_weights=True,
                         pretrained="none", device="cpu", precision="float32")
    result = train(patches.index, config, root / "model.pt", progress=lines)
    return scene.image, result.last_path, lines


def predict(image: Path, model: Path, out: Path, tiling: TilingConfig = TilingConfig()) -> tuple[np.ndarray, RecordingProgress]:
    lines = RecordingProgress()
    predict_scene_from_checkpoint(image, model, out, PredictConfig(tiling=tiling, device="cpu", precision="float32"),
                                  progress=lines)
    with rasterio.open(out) as src:
        return src.read(1), lines


def test_patches_and_training_say_the_patches_are_below_the_aspp_reach(trained):
    _, model, lines = trained
    assert any("Patches of 32 px are smaller than the reach" in line and "tiles of 32 px" in line
               for line in lines.infos)
    assert any("ASPP rates 1, 2, 3" in line for line in lines.infos)
    assert checkpoint.load_checkpoint(model)["meta"]["aspp_rates"] == [1, 2, 3]


def test_default_tiles_predict_as_at_the_patch_size_without_collapsing(trained, tmp_path):
    image, model, _ = trained
    default, lines = predict(image, model, tmp_path / "default.tif")
    assert "Tiles of 32 px, the patch size this model was trained on." in lines.infos and lines.warnings == []
    at_32, lines_32 = predict(image, model, tmp_path / "t32.tif", TilingConfig(32))
    assert not any(line.startswith("Tiles of") for line in lines_32.infos)  # an explicit size needs no note
    assert default.shape == (SIDE, SIDE)
    assert (default == at_32).mean() >= AGREEMENT
    _, counts = np.unique(default[default > 0], return_counts=True)
    assert (counts >= 0.05 * counts.sum()).sum() >= 2  # not one class everywhere


def test_explicit_tile_far_above_the_patch_size_warns(trained, tmp_path):
    image, model, _ = trained
    _, lines = predict(image, model, tmp_path / "t512.tif", TilingConfig(512))
    assert any("TILE_SIZE 512 px is 16x the 32 px patches" in w for w in lines.warnings)


def test_checkpoint_without_patch_size_keeps_512_px_tiles_with_a_note(trained, tmp_path):
    image, model, _ = trained
    payload = checkpoint.load_checkpoint(model)
    meta = {k: v for k, v in payload["meta"].items() if k not in ("patch_size", "aspp_rates")}
    checkpoint.save_checkpoint(tmp_path / "old.pt", payload["state_dict"], meta)
    _, lines = predict(image, tmp_path / "old.pt", tmp_path / "old.tif")
    assert any(line.startswith("Tiles of 512 px, the default: this model does not record") for line in lines.infos)
    assert any(f"in 1 tiles of {SIDE} x {SIDE} px (overlap 64 px" in line for line in lines.infos)


def test_command_line_and_batch_predict_take_the_same_default(trained, tmp_path, caplog):
    import logging

    from scl_deeplab.model_core.cli.main import main

    image, model, _ = trained
    default, _ = predict(image, model, tmp_path / "default.tif")
    base = ["predict", "--model", str(model), "--device", "cpu", "--precision", "float32"]
    with caplog.at_level(logging.INFO, logger="scl_deeplab"):
        assert main([*base, "--input", str(image), "--output", str(tmp_path / "cli.tif")]) == 0
    assert "Tiles of 32 px, the patch size this model was trained on." in caplog.text
    (tmp_path / "scenes.txt").write_text(f"{image}\n", encoding="utf-8")
    assert main([*base, "--scenes", str(tmp_path / "scenes.txt"), "--output-folder", str(tmp_path / "batch")]) == 0
    for out in (tmp_path / "cli.tif", tmp_path / "batch" / f"{Path(image).stem}_scl.tif"):
        with rasterio.open(out) as src:
            assert (src.read(1) == default).all(), out


def test_small_tiles_batch_up_to_one_512_px_tile_of_pixels():
    from scl_deeplab.model_core.prediction.predict import tiles_per_batch

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [tiles_per_batch(0, cpu, t) for t in (32, 64, 256, 512, 1024)] == [256, 64, 4, 1, 1]
    assert tiles_per_batch(0, gpu, 32) == 1024 and tiles_per_batch(0, gpu) == 4
    assert tiles_per_batch(3, cpu, 32) == 3


def test_fast_mode_on_small_tiles_warns(trained, tmp_path):
    image, model, _ = trained
    lines = RecordingProgress()
    predict_scene_from_checkpoint(image, model, tmp_path / "fast.tif", PredictConfig(device="cpu", fast=True),
                                  progress=lines)
    assert any(w.startswith("Fast mode on tiles of 32 x 32 px") and "2 x 2 grid" in w for w in lines.warnings)
