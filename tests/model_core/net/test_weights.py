"""Starting weights: torchvision's files found in a temporary TORCH_HOME under torchvision's own names, never downloaded."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core.errors import CheckpointError, WeightsNotFoundError
from scl_deeplab.model_core.net import checkpoint, weights
from scl_deeplab.model_core.net.model import build_model
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights, deeplabv3_resnet50

COCO_NAME = DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.url.rsplit("/", 1)[-1]
IMAGENET_V1 = ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
IMAGENET_V2 = ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1]


def _scrambled(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Random values of the same shapes, so loaded tensors cannot equal a fresh model's by chance."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            out[k] = torch.rand(v.shape, generator=g) + (0.5 if "running_var" in k else -0.5)
        else:
            out[k] = v.clone()
    return out


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, Path]:
    """Stand-ins for torchvision's COCO DeepLabv3 (21 classes, aux head) and ImageNet ResNet50 files."""
    folder = tmp_path_factory.mktemp("weights")
    coco = _scrambled(deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict(), 1)
    imagenet = _scrambled(resnet50(weights=None).state_dict(), 2)
    files = {"coco": folder / COCO_NAME, "imagenet": folder / IMAGENET_V1}
    torch.save(coco, files["coco"])
    torch.save(imagenet, files["imagenet"])
    return files


@pytest.fixture()
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME; returns its hub checkpoints folder (not yet created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _install(folder: Path, source: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink(source, folder / name)


def test_hub_folder_follows_torch_home(torch_home):
    assert weights.hub_checkpoints() == torch_home
    assert weights.coco_file_names() == ["deeplabv3_resnet50_coco-cd0a2569.pth"]
    assert weights.imagenet_file_names() == [IMAGENET_V1, IMAGENET_V2]


def test_coco_loads_everything_but_the_final_classifier_layers(torch_home, weight_files):
    _install(torch_home, weight_files["coco"], COCO_NAME)
    file_state = torch.load(weight_files["coco"], weights_only=True)
    net = build_model(aux=True)
    fresh_before = net.classifier[4].weight.clone()

    source = weights.initialise(net, "coco")

    own = net.state_dict()
    loaded = [k for k in file_state if not k.startswith(("classifier.4.", "aux_classifier.4."))]
    assert len(loaded) > 300
    for key in loaded:
        assert torch.equal(own[key], file_state[key]), key
    assert own["classifier.4.weight"].shape == (11, 256, 1, 1)
    assert torch.equal(own["classifier.4.weight"], fresh_before)  # left as initialised, for 11 classes
    assert source.kind == "coco" and source.file == str(torch_home / COCO_NAME)
    assert source.mean == weights.IMAGENET_MEAN and source.std == weights.IMAGENET_STD
    assert source.to_meta()["fresh_layers"] == ["aux_classifier.4", "classifier.4"]


def test_coco_into_a_model_without_aux_head(torch_home, weight_files):
    _install(torch_home, weight_files["coco"], COCO_NAME)
    net = build_model(aux=False)
    weights.initialise(net, "auto")
    file_state = torch.load(weight_files["coco"], weights_only=True)
    assert torch.equal(net.state_dict()["classifier.0.project.0.weight"], file_state["classifier.0.project.0.weight"])
    assert torch.equal(net.state_dict()["backbone.layer4.2.bn3.running_var"], file_state["backbone.layer4.2.bn3.running_var"])


def test_imagenet_loads_the_backbone_only(torch_home, weight_files):
    _install(torch_home, weight_files["imagenet"], IMAGENET_V2)  # the V2 name alone is found too
    file_state = torch.load(weight_files["imagenet"], weights_only=True)
    net = build_model()
    head_before = net.classifier[1].weight.clone()

    source = weights.initialise(net, "auto")  # no COCO file: ImageNet

    own = net.state_dict()
    for key, value in file_state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[f"backbone.{key}"], value), key
    assert not any(k.startswith("backbone.fc") for k in own)
    assert torch.equal(net.classifier[1].weight, head_before)
    assert source.kind == "imagenet" and source.file.endswith(IMAGENET_V2)
    assert "classifier.0" in source.to_meta()["fresh_layers"]


def test_auto_without_files_starts_random_and_says_how_to_get_weights(torch_home, caplog):
    net = build_model()
    before = net.backbone.conv1.weight.clone()
    with caplog.at_level(logging.WARNING):
        source = weights.initialise(net, "auto")
    assert source.kind == "none" and source.mean == (0.0, 0.0, 0.0) and source.std == (1.0, 1.0, 1.0)
    assert torch.equal(net.backbone.conv1.weight, before)
    assert COCO_NAME in caplog.text and str(torch_home) in caplog.text and "WEIGHTS_FILE" in caplog.text


@pytest.mark.parametrize("kind, name", [("coco", COCO_NAME), ("imagenet", IMAGENET_V1)])
def test_missing_weights_fail_at_once_naming_file_folder_and_alternative(torch_home, kind, name):
    with pytest.raises(WeightsNotFoundError) as caught:
        weights.resolve(kind)
    message = str(caught.value)
    assert name in message and str(torch_home) in message
    assert "WEIGHTS_FILE" in message and "never downloads" in message
    assert not torch_home.exists()  # nothing was created or fetched


def test_weights_file_wins_over_pretrained(torch_home, weight_files):
    _install(torch_home, weight_files["imagenet"], IMAGENET_V1)
    net = build_model()
    source = weights.initialise(net, "imagenet", weights_file=weight_files["coco"])
    file_state = torch.load(weight_files["coco"], weights_only=True)
    assert source.kind == "file" and source.file == str(weight_files["coco"])
    assert source.mean == weights.IMAGENET_MEAN  # a torchvision state dict: ImageNet normalisation
    assert torch.equal(net.state_dict()["backbone.conv1.weight"], file_state["backbone.conv1.weight"])


def test_weights_file_can_be_one_of_our_checkpoints(tmp_path):
    torch.manual_seed(4)
    trained = build_model()
    meta = checkpoint.input_to_meta(checkpoint.ModelInput.rgb("uint8", 255.0, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)))
    checkpoint.save_checkpoint(tmp_path / "ours.pt", trained.state_dict(), meta)
    net = build_model(aux=True)
    source = weights.initialise(net, "none", weights_file=tmp_path / "ours.pt")
    assert source.kind == "checkpoint" and source.mean == (0.1, 0.2, 0.3) and source.std == (0.4, 0.5, 0.6)
    for key, value in trained.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_weights_file_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="WEIGHTS_FILE .* does not exist"):
        weights.resolve("auto", tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot be read as tensors.*as WEIGHTS_FILE"):
        weights.initialise(build_model(), "none", weights_file=text)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(CheckpointError, match="does not hold DeepLabv3-ResNet50 or ResNet50 weights"):
        weights.initialise(build_model(), "none", weights_file=other)


def test_a_deeper_resnet_as_weights_file_is_refused_naming_it(tmp_path):
    from torchvision.models.segmentation import deeplabv3_resnet101

    deeper = tmp_path / "deeplabv3_resnet101.pth"
    torch.save(deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21, aux_loss=True).state_dict(),
               deeper)
    with pytest.raises(CheckpointError, match=r"holds DeepLabv3-ResNet101 weights .*backbone.layer3.6.*trains "
                                              r"DeepLabv3-ResNet50"):
        weights.initialise(build_model(), "none", weights_file=deeper)
