"""The prediction-only model (BatchNorm folded, bfloat16 where native) gives the plain float32 model's classes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.net import device as device_lib
from scl_deeplab.model_core.net.device import Precision, pick_precision
from scl_deeplab.model_core.net.fast import output_stride_16
from scl_deeplab.model_core.net.inference import TapConv2d, clear_prepared, fold_batchnorm, prepare, prepared
from scl_deeplab.model_core.net.model import aspp_rates, build_model, set_aspp_rates
from scl_deeplab.tests.models import fit_last_layer

AGREEMENT = 0.995  # the target for a path that runs at lower precision
SIDE = 64
# Flat regions of vegetation (left), water (top right) and cloud (bottom right), a little noise.
COLOURS = {4: (40, 120, 40), 6: (20, 30, 90), 9: (230, 230, 235)}


def blocks() -> tuple[torch.Tensor, np.ndarray]:
    """A normalised (1, 3, H, W) input and its SCL codes (H, W)."""
    codes = np.full((SIDE, SIDE), 4, dtype=np.int64)
    codes[: SIDE // 2, SIDE // 2 :] = 6
    codes[SIDE // 2 :, SIDE // 2 :] = 9
    rgb = np.stack([np.vectorize(lambda c, b=b: COLOURS[c][b])(codes) for b in range(3)]).astype(np.float32)
    rgb += np.random.default_rng(0).normal(0, 4, rgb.shape)
    return ((torch.from_numpy(np.clip(rgb, 0, 255)) / 255 - 0.5) / 0.25)[None], codes


@pytest.fixture(scope="module")
def fitted() -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """A DeepLabv3 (random backbone, aux head) whose last layer is fitted to the blocks, in eval mode.

    The classifier's BatchNorm statistics come from the input, so folding them is
    not a no-op; the last layer is a ridge fit, so the classes mean something.
    """
    x, codes = blocks()
    torch.manual_seed(0)
    return fit_to_blocks(build_model(aux=True), x, codes), x, codes


def fit_to_blocks(net: torch.nn.Module, x: torch.Tensor, codes: np.ndarray) -> torch.nn.Module:
    """``net`` in eval mode, classifier BatchNorm statistics from ``x``, last layer fitted to ``codes``."""
    for module in net.classifier.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    features: list[torch.Tensor] = []
    hook = net.classifier[-2].register_forward_hook(lambda _m, _i, out: features.append(out))
    with torch.no_grad():
        net.train()
        net(torch.cat([x, x.flip(-1)]))
        net.eval()
        net(x)
    hook.remove()
    fit_last_layer(net, features[-1][0].flatten(1).T, torch.from_numpy(codes[4::8, 4::8] - 1).reshape(-1))
    return net.eval()


def run(prep, x: torch.Tensor) -> torch.Tensor:
    """Logits (float32) of a prepared model, fed as the predict path feeds it."""
    autocast = torch.autocast("cpu", dtype=prep.autocast_dtype) if prep.autocast_dtype else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), autocast:
        return prep.model(x.to(prep.input_dtype).contiguous(memory_format=torch.channels_last))["out"].float()


def test_folding_batchnorm_keeps_the_logits_and_leaves_the_model_alone(fitted):
    net, x, codes = fitted
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded, count = fold_batchnorm(net)
    # Every BatchNorm of DeepLabv3-ResNet50 and its heads follows a convolution: all fold.
    assert count == sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 61
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        plain, fast = net(x)["out"], folded(x)["out"]
    assert (plain.argmax(1)[0].numpy() + 1 == codes).mean() > 0.95  # the fitted model is right
    assert torch.allclose(fast, plain, atol=1e-3, rtol=1e-3)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not {id(p) for p in folded.parameters()} & {id(p) for p in net.parameters()}


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_prepared_model_gives_the_classes_of_the_plain_float32_model(fitted, dtype):
    net, x, codes = fitted
    prep = prepare(net, Precision(dtype, "test"))
    with torch.no_grad():
        plain = net(x)["out"].argmax(1)
    logits = run(prep, x)
    assert logits.shape == (1, scl.NUM_CLASSES, SIDE, SIDE)
    assert (logits.argmax(1) == plain).float().mean() >= AGREEMENT
    assert prep.model.aux_classifier is None and net.aux_classifier is not None  # never computed for prediction
    assert type(prep.model.classifier[0].convs[3][0]).__name__ == "TapConv2d"  # ASPP rate 36 as 1x1 taps
    if dtype is torch.bfloat16:
        assert prep.input_dtype is torch.bfloat16 and prep.autocast_dtype is None
        assert prep.model.classifier[-1].weight.dtype is torch.float32  # logits in full precision
        assert prep.model.backbone.layer4[0].conv2.weight.dtype is torch.bfloat16
    else:  # float32 on a CPU: the wide 3x3 convolutions by Winograd, the 64-channel ones of layer1 direct
        assert type(prep.model.backbone.layer4[0].conv2).__name__ == "WinogradConv2d"
        assert type(prep.model.backbone.layer1[0].conv2).__name__ == "Conv2d"
    assert {p.dtype for p in net.parameters()} == {torch.float32}


def test_fast_prepared_model_runs_at_output_stride_16(fitted):
    net, x, _ = fitted
    prep = prepare(net, Precision(None, "test"), fast=True)
    assert prep.model.backbone.layer3[0].conv2.stride == (2, 2)
    assert net.backbone.layer3[0].conv2.stride == (1, 1)
    assert run(prep, x).shape == (1, scl.NUM_CLASSES, SIDE, SIDE)


def test_prepared_model_keeps_aspp_rates_scaled_to_small_patches(fitted):
    net, x, codes = fitted
    scaled = copy.deepcopy(net)
    set_aspp_rates(scaled, (1, 2, 3))
    with torch.no_grad():
        assert not torch.allclose(scaled(x)["out"], net(x)["out"], atol=1e-2)  # the rates change what ASPP sees
    fit_to_blocks(scaled, x, codes)
    with torch.no_grad():
        plain = scaled(x)["out"]
    assert (plain.argmax(1)[0].numpy() + 1 == codes).mean() > 0.95  # refitted, its classes mean something
    prep = prepare(scaled, Precision(None, "test"))
    assert torch.allclose(run(prep, x), plain, atol=1e-3, rtol=1e-3)
    # Random features have thin class margins, so bfloat16 rounding alone flips about 1 % of pixels here:
    # the prepared bfloat16 copy (taps at rates 2 and 3) must do as well as the plain model under autocast.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = (scaled(x)["out"].float().argmax(1) == plain.argmax(1)).float().mean()
    bf16 = prepare(scaled, Precision(torch.bfloat16, "test"))
    assert (run(bf16, x).argmax(1) == plain.argmax(1)).float().mean() >= min(AGREEMENT, autocast - 0.005)
    branches = [prep.model.classifier[0].convs[i][0] for i in (1, 2, 3)]
    assert [type(b).__name__ for b in branches] == ["WinogradConv2d", "TapConv2d", "TapConv2d"]
    assert [b.dilation for b in branches[1:]] == [(2, 2), (3, 3)]  # rate 1 is a plain 3x3, by Winograd
    # At output stride 16 the rates halve, odd ones rounding down (fast.py): 1, 2, 3 -> 1, 1, 1.
    assert [output_stride_16(scaled).classifier[0].convs[i][0].dilation for i in (1, 2, 3)] == [(1, 1)] * 3
    fast = prepare(scaled, Precision(None, "test"), fast=True)
    assert run(fast, x).shape == (1, scl.NUM_CLASSES, SIDE, SIDE)
    assert aspp_rates(scaled) == (1, 2, 3) and aspp_rates(net) == (12, 24, 36)  # the source models are unchanged


def test_cpu_without_native_bfloat16_gets_a_float32_model(fitted, monkeypatch):
    net, _, _ = fitted
    monkeypatch.setattr(device_lib, "cpu_has_native_bf16", lambda: False)
    prep = prepare(net, pick_precision(torch.device("cpu"), "auto"))
    assert prep.input_dtype is torch.float32 and prep.autocast_dtype is None
    assert {p.dtype for p in prep.model.parameters()} == {torch.float32}


def test_prepared_copies_are_cached_until_the_weights_change(fitted):
    net, _, _ = fitted
    clear_prepared()
    precision = Precision(None, "test")
    first = prepared(net, precision)
    assert prepared(net, precision) is first
    assert prepared(net, precision, fast=True) is not first
    bias = net.classifier[-1].bias
    with torch.no_grad():
        bias.add_(1.0)
    again = prepared(net, precision)
    assert again is not first
    assert torch.allclose(again.model.classifier[-1].bias, bias)
    with torch.no_grad():
        bias.sub_(1.0)
    clear_prepared()


@pytest.mark.parametrize("size,dilation", [((17, 23), 6), ((16, 16), 12), ((8, 12), 12), ((5, 40), 36)])
def test_dilated_convolution_as_taps_equals_the_convolution(size, dilation):
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(8, 5, 3, padding=dilation, dilation=dilation, bias=True).eval()
    assert TapConv2d.fits(conv)
    x = torch.randn(2, 8, *size)
    with torch.no_grad():
        expected, got = conv(x), TapConv2d(conv)(x)
    assert got.shape == expected.shape == (2, 5, *size)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    assert not TapConv2d.fits(torch.nn.Conv2d(8, 5, 3, padding=1, dilation=2))  # padding other than dilation


@pytest.mark.parametrize("dtype, fast", [(None, False), (torch.bfloat16, False), (None, True)])
def test_six_band_model_runs_every_cpu_speed_path(dtype, fast):
    """Issue 18: BatchNorm folding, bfloat16, Winograd and fast mode take a widened first convolution."""
    from scl_deeplab.model_core.net import input_conv

    x, codes = blocks()
    x6 = torch.cat([x, x.flip(1) * 0.5], dim=1)  # three further bands that follow the classes too
    torch.manual_seed(1)
    net = build_model(aux=True)
    input_conv.set_input_bands(net, 6)
    net = fit_to_blocks(net, x6, codes)
    prep = prepare(net, Precision(dtype, "test"), fast=fast)
    assert prep.model.backbone.conv1.in_channels == 6
    with torch.no_grad():
        plain = net(x6)["out"].argmax(1)
    logits = run(prep, x6)
    assert logits.shape == (1, scl.NUM_CLASSES, SIDE, SIDE)
    assert (plain[0].numpy() + 1 == codes).mean() > 0.95
    # Fast mode smooths class edges (output stride 16), so a few more pixels differ there.
    agree = (logits.argmax(1) == plain).float().mean()
    assert agree >= (0.9 if fast else AGREEMENT)
