"""The fast mode (output stride 16) gives the same classes as the plain mode, with the real DeepLabv3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.net.checkpoint import ModelInput, input_to_meta
from scl_deeplab.model_core.net.fast import output_stride_16, to_stride_8
from scl_deeplab.model_core.net.model import build_model
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.tests.models import colour_blocks, fit_last_layer

META = input_to_meta(ModelInput.rgb("uint8", 255.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
SIDE = 192
# Three flat regions: vegetation (left), water (top right), cloud (bottom right).
FAST_AGREEMENT = 0.97  # the target; edges of regions are where the two modes may differ
# Under bfloat16 (auto on AMX CPUs) random features plus a fitted last layer have thin class margins, so
# rounding alone flips some pixels in both modes; a trained model's margins are wider (see make bench).
FAST_AGREEMENT_BF16_RANDOM = 0.85


def blocks() -> tuple[np.ndarray, np.ndarray]:
    """(3, H, W) uint8 true colour with a little noise, and its SCL codes (H, W)."""
    return colour_blocks(SIDE)


@pytest.fixture(scope="module")
def scene_and_model(tmp_path_factory) -> tuple[Path, torch.nn.Module, np.ndarray]:
    """A block scene on disk and a DeepLabv3 whose BatchNorm statistics and last layer are fitted to it.

    The last layer is fitted on the features of both modes, as DeepLab models trained
    at stride 16 and run at stride 8 are; with wholly random weights the two modes see
    unrelated features, so agreement would say nothing about the fast path.
    """
    rgb, codes = blocks()
    path = tmp_path_factory.mktemp("fast") / "blocks.tif"
    with rasterio.open(path, "w", driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(399960.0, 5000040.0, 20.0, 20.0)) as dst:
        dst.write(rgb)
    torch.manual_seed(0)
    net = build_model()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
            module.reset_running_stats()
    x = ((torch.from_numpy(rgb).float() / 255 - 0.5) / 0.25)[None]
    features: list[torch.Tensor] = []
    hook = net.classifier[-2].register_forward_hook(lambda _m, _i, out: features.append(out))
    with torch.no_grad():
        net.train()
        net(torch.cat([x, x.flip(-1)]))  # BatchNorm statistics from the scene
        net.eval()
        net(x)
        output_stride_16(net)(x)
    hook.remove()
    f = torch.cat([features[-2][0].flatten(1).T, features[-1][0].flatten(1).T])  # (positions, 256)
    # Both modes run the head's last layers on the stride-8 grid.
    target = torch.from_numpy(codes[4::8, 4::8].astype(np.int64) - 1).reshape(-1).repeat(2)
    fit_last_layer(net, f, target)
    return path, net.eval(), codes


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_output_stride_16_shares_weights_and_leaves_the_model_unchanged():
    net = build_model().eval()
    fast = output_stride_16(net)
    assert fast is not net
    assert fast.backbone.layer3[0].conv2.stride == (2, 2) and net.backbone.layer3[0].conv2.stride == (1, 1)
    assert [m[0].dilation for m in fast.classifier[0].convs[1:4]] == [(6, 6), (12, 12), (18, 18)]
    assert [m[0].dilation for m in net.classifier[0].convs[1:4]] == [(12, 12), (24, 24), (36, 36)]
    assert fast.backbone.layer4[1].conv2.dilation == (2, 2) and fast.backbone.layer3[1].conv2.dilation == (1, 1)
    assert fast.backbone.conv1.weight is net.backbone.conv1.weight
    with torch.no_grad():
        out = fast(torch.zeros(1, 3, 64, 96))["out"]
    assert out.shape == (1, scl.NUM_CLASSES, 64, 96)


def test_stride_16_features_are_the_stride_8_features_at_even_positions():
    torch.manual_seed(0)
    net = build_model().eval()
    fast = output_stride_16(net)
    x = torch.randn(1, 3, 80, 112)  # 10 x 14 at stride 8, 5 x 7 at stride 16
    with torch.no_grad():
        plain_features, fast_features = net.backbone(x)["out"], fast.backbone(x)["out"]
    assert plain_features.shape[-2:] == (10, 14) and fast_features.shape[-2:] == (5, 7)
    even = plain_features[..., ::2, ::2]
    assert torch.allclose(fast_features, even, rtol=1e-4, atol=1e-4 * even.abs().max().item())


@pytest.mark.parametrize(("height", "width"), [(10, 14), (9, 13)])
def test_to_stride_8_keeps_even_positions_and_fills_the_rest_between_them(height, width):
    features = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7) ** 1.5
    up = to_stride_8(features, height, width)
    assert up.shape == (1, 2, height, width)
    assert torch.allclose(up[..., ::2, ::2][..., :5, :7], features)
    assert torch.allclose(up[..., 1, 0], (features[..., 0, 0] + features[..., 1, 0]) / 2)
    if height == 10:
        assert torch.equal(up[..., 9, :], up[..., 8, :])  # past the last stride-16 row: repeated


def test_fast_model_predicts_tiles_of_any_multiple_of_8():
    net = build_model().eval()
    with torch.no_grad():
        for height, width in ((72, 104), (64, 96)):
            assert output_stride_16(net)(torch.zeros(1, 3, height, width))["out"].shape == (1, scl.NUM_CLASSES, height, width)


@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_fast_mode_gives_the_classes_of_the_plain_mode(scene_and_model, tmp_path, precision):
    path, net, codes = scene_and_model
    tiling = TilingConfig(SIDE, 0)
    plain = predict_scene(path, net, META, tmp_path / "plain.tif", PredictConfig(tiling, precision=precision))
    fast = predict_scene(path, net, META, tmp_path / "fast.tif",
                         PredictConfig(tiling, precision=precision, fast=True))
    a, b = read(plain.output), read(fast.output)
    assert a.shape == b.shape == (SIDE, SIDE)
    assert (a == codes).mean() > 0.95  # the fitted model is right, so agreement means something
    assert set(np.unique(b)) == {4, 6, 9}
    assert (a == b).mean() >= (FAST_AGREEMENT if "precision float32" in plain.device else FAST_AGREEMENT_BF16_RANDOM)
