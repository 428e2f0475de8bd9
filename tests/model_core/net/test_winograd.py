"""Winograd F(4x4, 3x3) convolutions give what the direct convolution gives."""

from __future__ import annotations

import pytest
import torch
from scl_deeplab.model_core.net.inference import swap_modules
from scl_deeplab.model_core.net.winograd import MIN_CHANNELS, WinogradConv2d


@pytest.mark.parametrize(
    "size,dilation,bias,channels_last",
    [((17, 23), 1, True, False), ((16, 16), 2, False, True), ((9, 30), 4, True, True), ((5, 7), 3, True, False), ((1, 1), 1, True, False)],
)
def test_winograd_convolution_equals_the_direct_one(size, dilation, bias, channels_last):
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(12, 7, 3, padding=dilation, dilation=dilation, bias=bias).eval()
    x = torch.randn(2, 12, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert WinogradConv2d.fits(conv, min_channels=12)
    with torch.no_grad():
        expected, got = conv(x), WinogradConv2d(conv)(x)
    assert got.shape == expected.shape == (2, 7, *size)
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


def test_only_stride_1_dense_3x3_convolutions_with_enough_channels_fit():
    wide = MIN_CHANNELS
    assert WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 3, padding=2, dilation=2))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide - 1, 8, 3, padding=1))  # too few channels to gain
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 3, padding=1, stride=2))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, wide, 3, padding=1, groups=2))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 3, padding=1, dilation=2))  # padding other than dilation
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 3, padding=(1, 2), dilation=(1, 2)))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 1))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(wide, 8, 3, padding=1, padding_mode="reflect"))


def test_swapping_in_winograd_replaces_the_fitting_convolutions_of_a_model_in_place():
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),  # too few input channels: stays
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=2, dilation=2),
        torch.nn.Sequential(torch.nn.Conv2d(16, 4, 3, padding=1)),
    ).eval()
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        expected = net(x)
        assert swap_modules(net, lambda m: WinogradConv2d.fits(m, min_channels=16), WinogradConv2d) == 2
        got = net(x)
    assert isinstance(net[0], torch.nn.Conv2d)
    assert isinstance(net[2], WinogradConv2d) and isinstance(net[3][0], WinogradConv2d)
    assert torch.allclose(got, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


@pytest.mark.parametrize("channels,dilation", [(128, 2), (256, 4)])
def test_winograd_error_at_the_widths_it_runs_at_stays_near_1e_5(channels, dilation):
    torch.manual_seed(4)
    conv = torch.nn.Conv2d(channels, 64, 3, padding=dilation, dilation=dilation).eval()
    x = torch.randn(1, channels, 23, 20).contiguous(memory_format=torch.channels_last)
    assert WinogradConv2d.fits(conv)
    with torch.no_grad():
        reference = torch.nn.functional.conv2d(x.double(), conv.weight.double(), conv.bias.double(),
                                               padding=dilation, dilation=dilation)
        got = WinogradConv2d(conv)(x)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got.double() - reference).abs().max() <= 1e-4 * reference.abs().max()


def test_subclasses_and_other_dtypes_are_left_alone():
    class Standardised(torch.nn.Conv2d):  # computes something else from its weights
        def forward(self, x):
            w = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
            return self._conv_forward(x, w, self.bias)

    assert not WinogradConv2d.fits(Standardised(MIN_CHANNELS, 8, 3, padding=1))
    assert not WinogradConv2d.fits(torch.nn.Conv2d(MIN_CHANNELS, 8, 3, padding=1).double())
