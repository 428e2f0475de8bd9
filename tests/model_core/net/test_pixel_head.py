"""The pixel head beside DeepLab: what it adds, where it trains, and that every prediction path keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.net import checkpoint, model, pixel_head
from scl_deeplab.model_core.net.device import Precision
from scl_deeplab.model_core.net.fast import output_stride_16
from scl_deeplab.model_core.net.inference import prepare
from scl_deeplab.model_core.training.train import TrainConfig, train
from torch import nn
from torch.nn import functional as F


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return model.build_model(pixel_bands=3).eval()


def _plain_logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DeepLab's own upsampled logits, without the pixel head."""
    features = net.backbone(x)["out"]
    return F.interpolate(net.classifier(features), size=x.shape[-2:], mode="bilinear", align_corners=False)


def test_its_logits_add_to_deeplabs_at_full_resolution(net):
    x = torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        out = net(x)["out"]
        head = net.pixel_head(x)
        plain = _plain_logits(net, x)
    assert head.shape == out.shape == (2, scl.NUM_CLASSES, 40, 48)
    assert head.abs().max() > 0
    torch.testing.assert_close(out, plain + head)
    # Per pixel: changing one pixel changes the head's logits there and nowhere else.
    y = x.clone()
    y[:, :, 7, 9] = 1 - y[:, :, 7, 9]
    with torch.no_grad():
        diff = (net.pixel_head(y) - head).abs().sum(1)
    assert diff[:, 7, 9].min() > 0
    diff[:, 7, 9] = 0
    assert diff.max() == 0


def test_it_trains_in_every_stage_in_a_group_of_its_own(net):
    for stage in model.STAGES:
        model.freeze_for(net, stage)
        assert all(p.requires_grad for p in net.pixel_head.parameters()), stage
        head, pixel, backbone = model.trainable_parameters(net)
        assert [id(p) for p in pixel] == [id(p) for p in net.pixel_head.parameters()]
        assert not {id(p) for p in pixel} & {id(p) for p in head + backbone}
    net.eval()


def test_fast_mode_keeps_it(net):
    x = torch.rand(1, 3, 64, 64)
    fast = output_stride_16(net).eval()
    with torch.no_grad():
        with_head = fast(x)["out"]
        fast.pixel_head = None
        without = fast(x)["out"]
    torch.testing.assert_close(with_head, without + net.pixel_head(x))


def test_bfloat16_prediction_keeps_it_float32(net):
    prepared = prepare(net, Precision(torch.bfloat16, "test")).model
    assert prepared.pixel_head[0].weight.dtype == torch.float32
    assert prepared.backbone.conv1.weight.dtype == torch.bfloat16
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = prepared(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))["out"]
        reference = net(x)["out"]
    assert out.dtype == torch.float32
    assert (out.argmax(1) == reference.argmax(1)).float().mean() > 0.9


def test_old_checkpoints_have_none_and_load_without_one(tmp_path):
    torch.manual_seed(0)
    plain = model.build_model()
    assert pixel_head.of(plain) is None and pixel_head.in_state(plain.state_dict()) is None
    torch.manual_seed(0)
    path = tmp_path / "old.pt"
    checkpoint.save_checkpoint(path, plain.state_dict(), _meta())
    loaded, _ = checkpoint.load_model(path)
    assert pixel_head.of(loaded) is None
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["out"], plain.eval()(x)["out"])


def _meta() -> dict:
    spec = checkpoint.ModelInput.rgb("uint8", 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return {**checkpoint.input_to_meta(spec), "patch_size": 32, "history": []}


def test_training_gives_a_new_model_one_and_the_checkpoint_brings_it_back(tmp_path):
    scene = make_sample_scene(tmp_path / "image.tif", tmp_path / "scl.tif", size=96, seed=5)
    patches = make_patches(scene.image, scene.scl, tmp_path / "patches", PatchConfig(patch_size_px=32,
                                                                                      preview_patches=0)).index
    config = TrainConfig(stage="full", epochs=1, batch_size=4, device="cpu", pretrained="none")
    result = train(patches, config, tmp_path / "m.pt")
    payload = checkpoint.load_checkpoint(result.best_path)
    assert payload["meta"]["pixel_head"] is True
    assert pixel_head.in_state(payload["state_dict"]) == 3
    loaded, _ = checkpoint.load_model(result.best_path)
    assert pixel_head.of(loaded) is not None
    torch.testing.assert_close(loaded.pixel_head[0].weight, payload["state_dict"]["pixel_head.0.weight"])

    resumed = train(patches, TrainConfig(stage="head", epochs=1, batch_size=4, device="cpu"), tmp_path / "r.pt",
                    resume=result.last_path)
    before, after = payload["state_dict"], checkpoint.load_checkpoint(resumed.last_path)["state_dict"]
    assert not torch.equal(before["pixel_head.4.weight"], after["pixel_head.4.weight"])  # it trained on
    assert torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])  # head stage: frozen

    plain = train(patches, TrainConfig(stage="full", epochs=1, batch_size=4, device="cpu", pretrained="none",
                                       pixel_head=False), tmp_path / "plain.pt")
    assert pixel_head.in_state(checkpoint.load_checkpoint(plain.best_path)["state_dict"]) is None


def test_onnx_export_carries_it(tmp_path):
    import numpy as np
    from scl_deeplab.model_core.net.onnx_export import export_onnx
    from scl_deeplab.model_core.prediction.onnx_runtime import OnnxModel
    from scl_deeplab.tests.models import META

    torch.manual_seed(0)
    net = model.build_model(pixel_bands=3)
    with torch.no_grad():
        net.pixel_head[4].bias.copy_(torch.linspace(-3, 3, scl.NUM_CLASSES))  # a head that matters to the output
    checkpoint.save_checkpoint(tmp_path / "m.pt", net.state_dict(), META)
    result = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    x = np.random.default_rng(1).normal(size=(1, 3, 48, 40)).astype(np.float32)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(x))["out"].softmax(dim=1).numpy()
        without = _plain_logits(net, torch.from_numpy(x)).softmax(dim=1).numpy()
    got = OnnxModel(result.output).run(x)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - without).max() > 1e-2


def test_int8_export_keeps_it_float32(tmp_path):
    import onnx
    from scl_deeplab.model_core.net.onnx_export import export_onnx
    from scl_deeplab.tests.onnx_models import fitted_blocks

    blocks = fitted_blocks(tmp_path)
    payload = checkpoint.load_checkpoint(blocks["checkpoint"])
    torch.manual_seed(0)
    head = pixel_head.PixelHead(3, scl.NUM_CLASSES)
    state = {**payload["state_dict"], **{pixel_head.PREFIX + k: v for k, v in head.state_dict().items()}}
    checkpoint.save_checkpoint(tmp_path / "with_head.pt", state, payload["meta"])
    result = export_onnx(tmp_path / "with_head.pt", tmp_path / "int8.onnx", int8=True, patches=blocks["patches"],
                         calibration_tiles=4)
    graph = onnx.load(str(result.output)).graph
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    head_convs = [n for n in convs if "/pixel_head/" in n.name]
    assert len(head_convs) == 3
    assert not [n.name for n in head_convs if n.input[1] in dequantized]  # float32 weights
    assert sum(1 for n in convs if n.input[1] in dequantized) == 61 - 3  # DeepLab quantised as without the head
