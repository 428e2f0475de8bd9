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
from scl_deeplab.tests.recording import RecordingProgress
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


def test_aspp_rates_change_dilation_and_padding_but_not_the_weights():
    net = model.build_model(aspp_rates=(1, 2, 3))
    assert model.aspp_rates(net) == (1, 2, 3)
    convs = [branch[0] for branch in net.classifier[0].convs[1:4]]
    assert [(c.dilation, c.padding) for c in convs] == [((r, r), (r, r)) for r in (1, 2, 3)]
    standard = model.build_model()
    assert model.aspp_rates(standard) == (12, 24, 36)
    standard.load_state_dict(net.state_dict())  # same tensors whatever the rates
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 32, 32))["out"].shape == (2, scl.NUM_CLASSES, 32, 32)
    assert not model.set_aspp_rates(nn.Conv2d(3, 3, 1), (1, 2, 3)) and model.aspp_rates(nn.Conv2d(3, 3, 1)) is None
    with pytest.raises(ValueError, match="3 dilated branches"):
        model.set_aspp_rates(net, (1, 2))


def test_training_on_small_patches_scales_aspp_and_the_checkpoint_brings_the_rates_back(patches, tmp_path):
    lines = RecordingProgress()
    config = TrainConfig(stage="full", epochs=1, batch_size=4, device="cpu", pretrained="none", seed=0)
    result = train(patches, config, tmp_path / "scaled.pt", progress=lines)
    assert list(result.meta["aspp_rates"]) == [1, 2, 3]
    assert any("Patches of 32 px" in line and "rates 1, 2, 3" in line for line in lines.infos)
    net, meta = checkpoint.load_model(result.best_path)
    assert meta["aspp_rates"] == [1, 2, 3] and model.aspp_rates(net) == (1, 2, 3)
    resumed = train(patches, TrainConfig(stage="head", epochs=1, batch_size=4, device="cpu"), tmp_path / "more.pt",
                    resume=result.best_path)
    assert list(resumed.meta["aspp_rates"]) == [1, 2, 3]  # "auto" keeps the rates the weights learned with


def test_checkpoints_without_rates_keep_the_standard_ones_and_say_what_that_means(patches, start, tmp_path):
    net, meta = checkpoint.load_model(start)
    assert "aspp_rates" not in meta and model.aspp_rates(net) == (12, 24, 36)
    lines = RecordingProgress()
    result = train(patches, TrainConfig(stage="head", epochs=1, batch_size=4, device="cpu"), tmp_path / "head.pt",
                   resume=start, progress=lines)
    assert list(result.meta["aspp_rates"]) == [12, 24, 36]
    assert any("keeps the standard rates" in line and "tiles of 32 px" in line for line in lines.warnings)
