"""DeepLab's first convolution for N bands: pretrained RGB filters kept byte-identical, extra bands from their mean."""

from __future__ import annotations

import pytest
import torch
from scl_deeplab.model_core.errors import BandCountError
from scl_deeplab.model_core.net import checkpoint, input_conv, weights
from scl_deeplab.model_core.net.model import build_model
from torchvision.models import resnet50


@pytest.fixture(scope="module")
def rgb_file(tmp_path_factory):
    """A ResNet-50 state dict standing in for true-colour pretrained weights (random, seeded)."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("rgb") / "resnet50-0676ba61.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    return path


def test_widen_keeps_rgb_filters_and_starts_extra_bands_from_their_scaled_mean():
    weight = torch.randn(64, 3, 7, 7)
    wide = input_conv.widen(weight, 6, (2, 1, 0))  # B02, B03, B04, B8A, B11, B12: red is band 3
    assert wide.shape == (64, 6, 7, 7)
    for source, target in enumerate((2, 1, 0)):
        assert torch.equal(wide[:, target], weight[:, source])
    expected = weight.mean(dim=1) * 0.5  # 3/N of the mean for N = 6
    for extra in (3, 4, 5):
        assert torch.allclose(wide[:, extra], expected)


def test_pretrained_true_colour_weights_widen_into_a_six_band_model(rgb_file):
    net = build_model()
    input_conv.set_input_bands(net, 6)
    source = weights.load_weights(net, "imagenet", rgb_file, rgb=(2, 1, 0))
    assert source.kind == "imagenet" and input_conv.input_bands(net) == 6
    original = torch.load(rgb_file, weights_only=True)["conv1.weight"]
    loaded = net.state_dict()[input_conv.FIRST_CONV]
    for source_band, target in enumerate((2, 1, 0)):  # byte-identical, not just close
        assert torch.equal(loaded[:, target], original[:, source_band])
    assert torch.equal(net.state_dict()["backbone.layer1.0.conv1.weight"],
                       torch.load(rgb_file, weights_only=True)["layer1.0.conv1.weight"])
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 6, 32, 32))["out"].shape == (2, 11, 32, 32)


def test_true_colour_weights_without_red_green_blue_among_the_bands_are_refused(rgb_file):
    net = build_model()
    input_conv.set_input_bands(net, 4)
    with pytest.raises(BandCountError, match="take 3 input bands; this model reads 4.*B04, B03, B02"):
        weights.load_weights(net, "imagenet", rgb_file, rgb=None)


def test_random_weights_give_a_plain_n_band_convolution():
    torch.manual_seed(0)
    net = build_model()
    input_conv.set_input_bands(net, 5)
    conv = net.backbone.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (5, 64, (7, 7), (2, 2))
    assert conv.bias is None and 0.01 < float(conv.weight.detach().std()) < 0.2  # kaiming, fan_out: about 0.025
    with pytest.raises(ValueError, match="at least one band"):
        input_conv.set_input_bands(net, 0)


def test_a_six_band_checkpoint_loads_with_its_first_convolution(tmp_path):
    torch.manual_seed(1)
    net = build_model().eval()
    input_conv.set_input_bands(net, 6)
    spec = checkpoint.ModelInput(("B02", "B03", "B04", "B8A", "B11", "B12"), "uint16", 10000.0, (0.1,) * 6, (0.2,) * 6)
    checkpoint.save_checkpoint(tmp_path / "ms.pt", net.state_dict(), checkpoint.input_to_meta(spec))
    model, meta = checkpoint.load_model(tmp_path / "ms.pt")
    assert checkpoint.input_from_meta(meta) == spec
    x = torch.rand(2, 6, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)["out"], net(x)["out"])
