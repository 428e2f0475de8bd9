"""The real DeepLabv3-ResNet50: outputs, freeze policies, and what each stage's training changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.net import checkpoint, model
from scl_deeplab.model_core.training.train import TrainConfig, train
from torch import nn

INPUT = checkpoint.input_to_meta(checkpoint.ModelInput.rgb("uint8", 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))


@pytest.fixture(scope="module")
def deeplab() -> nn.Module:
    torch.manual_seed(0)
    return model.build_model(aux=True)


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    """Real Make patches output: 32 px patches of a 96 px sample scene (7 train, 2 validation)."""
    root = tmp_path_factory.mktemp("scene")
    scene = make_sample_scene(root / "image.tif", root / "scl.tif", size=96, seed=5)
    result = make_patches(scene.image, scene.scl, root / "patches", PatchConfig(patch_size_px=32, preview_patches=0))
    assert result.train_count >= 5 and result.val_count >= 1
    return result.index


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    """A checkpoint of a randomly initialised model, to train each stage from."""
    path = tmp_path_factory.mktemp("start") / "start.pt"
    torch.manual_seed(1)
    checkpoint.save_checkpoint(path, model.build_model().state_dict(), {**INPUT, "patch_size": 32, "history": []})
    return path


def test_outputs_eleven_class_maps_of_the_input_size(deeplab):
    deeplab.eval()
    with torch.no_grad():
        out = deeplab(torch.rand(2, 3, 40, 48))
    assert out["out"].shape == (2, scl.NUM_CLASSES, 40, 48)
    assert out["aux"].shape == (2, scl.NUM_CLASSES, 40, 48)
    assert deeplab.classifier[4].out_channels == 11
    assert model.build_model().aux_classifier is None


def _bn_training(net: nn.Module) -> dict[str, bool]:
    return {n: m.training for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}


def test_head_stage_freezes_backbone_and_its_batchnorm(deeplab):
    model.freeze_for(deeplab, "head")
    model.train_mode(deeplab)
    trainable = {n for n, p in deeplab.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("classifier.", "aux_classifier.")) for n in trainable)
    assert "classifier.4.weight" in trainable and "aux_classifier.4.weight" in trainable
    modes = _bn_training(deeplab)
    assert not any(mode for n, mode in modes.items() if n.startswith("backbone."))
    assert all(mode for n, mode in modes.items() if n.startswith("classifier."))
    deeplab.train()  # a plain train() flips frozen BatchNorm back ...
    assert modes != _bn_training(deeplab)
    model.train_mode(deeplab)  # ... and train_mode re-applies the policy
    assert modes == _bn_training(deeplab)


def test_layer4_stage_trains_layer4_and_head_only(deeplab):
    model.freeze_for(deeplab, "layer4")
    model.train_mode(deeplab)
    trainable = {n for n, p in deeplab.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.layer4.") for n in trainable)
    assert not any(n.startswith(("backbone.layer3.", "backbone.layer1.", "backbone.conv1")) for n in trainable)
    modes = _bn_training(deeplab)
    assert modes["backbone.layer4.0.bn1"] and not modes["backbone.layer3.5.bn3"] and not modes["backbone.bn1"]
    model.freeze_for(deeplab, "full")
    assert all(p.requires_grad for p in deeplab.parameters())
    with pytest.raises(ValueError, match="Unknown stage"):
        model.freeze_for(deeplab, "layer2")


def test_staged_forward_equals_the_model_and_skips_autograd_in_the_frozen_part(deeplab):
    model.freeze_for(deeplab, "head")
    deeplab.eval()
    x = torch.rand(2, 3, 32, 32)
    ours = model.forward(deeplab, x)
    with torch.no_grad():
        theirs = deeplab(x)
    assert torch.allclose(ours["out"], theirs["out"], atol=1e-6)
    assert torch.allclose(ours["aux"], theirs["aux"], atol=1e-6)
    ours["out"].sum().backward()
    assert deeplab.classifier[4].weight.grad is not None
    assert all(p.grad is None for p in deeplab.backbone.parameters())
    deeplab.zero_grad(set_to_none=True)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load_checkpoint(path)["state_dict"]


def _changed(before: dict, after: dict, prefix: str) -> list[str]:
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def _train_stage(stage: str, patches: Path, start: Path, out: Path) -> dict[str, torch.Tensor]:
    config = TrainConfig(stage=stage, epochs=1, batch_size=4, learning_rate=1e-2, device="cpu", seed=0)
    result = train(patches, config, out, resume=start)
    assert result.history[-1]["epoch"] == 1
    return _state(result.last_path)


def test_head_training_leaves_backbone_byte_identical(patches, start, tmp_path):
    before = _state(start)
    after = _train_stage("head", patches, start, tmp_path / "head.pt")
    assert _changed(before, after, "backbone.") == []  # weights and BatchNorm running statistics
    changed = _changed(before, after, "classifier.")
    assert "classifier.4.weight" in changed
    assert "classifier.2.running_mean" in changed  # the head's own BatchNorm does learn statistics


def test_layer4_training_leaves_layers_1_to_3_byte_identical(patches, start, tmp_path):
    before = _state(start)
    after = _train_stage("layer4", patches, start, tmp_path / "layer4.pt")
    for frozen in ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.", "backbone.layer2.", "backbone.layer3."):
        assert _changed(before, after, frozen) == [], frozen
    changed = _changed(before, after, "backbone.layer4.")
    assert "backbone.layer4.0.conv1.weight" in changed
    assert "backbone.layer4.2.bn3.running_var" in changed
    assert "classifier.4.weight" in _changed(before, after, "classifier.")
