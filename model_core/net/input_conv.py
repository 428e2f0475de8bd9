"""DeepLab's first convolution for any number of input bands.

ResNet's ``conv1`` reads three bands. For N bands it is replaced by an N-band
convolution of the same shape otherwise. Pretrained true-colour weights are widened,
not retrained: the red, green and blue filters are copied unchanged into the places of
red, green and blue, and every further band starts from the mean of the three RGB
filters times 3/N. Multispectral input is normalised per band (zero mean over the
training patches), so the extra bands leave the layer's mean response as it was; if
they were independent of the RGB bands they would add (N-3)/N^2 of its variance
(8 % for six bands), and correlated with them they add a matching share of the same
signal. With random weights the N-band convolution is simply initialised as
torchvision initialises ResNet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

FIRST_CONV = "backbone.conv1.weight"


def input_bands(net: nn.Module) -> int:
    """How many bands the network reads (3 for anything without ResNet's ``conv1``)."""
    conv = _conv1(net)
    return conv.in_channels if conv is not None else 3


def set_input_bands(net: nn.Module, bands: int) -> None:
    """Give the network a randomly initialised first convolution reading ``bands`` bands, in place.

    Raises:
        ValueError: ``bands`` below 1, or a network without ResNet's ``conv1`` asked for other than 3 bands.
    """
    if bands < 1:
        raise ValueError(f"A model reads at least one band, not {bands}.")
    conv = _conv1(net)
    if conv is None:
        if bands != 3:
            raise ValueError(f"This network has no ResNet conv1 to widen to {bands} bands.")
        return
    if conv.in_channels == bands:
        return
    device = conv.weight.device
    wider = nn.Conv2d(bands, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False, device=device)
    if device.type != "meta":
        nn.init.kaiming_normal_(wider.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's ResNet
    net.backbone.conv1 = wider  # type: ignore[union-attr]


def widen(weight: torch.Tensor, bands: int, rgb: Sequence[int]) -> torch.Tensor:
    """A (64, 3, k, k) true-colour filter bank as (64, ``bands``, k, k): RGB at positions ``rgb``, the rest 3/N of
    their mean."""
    if weight.shape[1] != 3 or len(rgb) != 3:
        raise ValueError(f"Only three-band (RGB) weights are widened, not {weight.shape[1]} bands.")
    extra = weight.mean(dim=1, keepdim=True) * (3.0 / bands)
    out = extra.expand(weight.shape[0], bands, *weight.shape[2:]).clone()
    for source, target in enumerate(rgb):
        out[:, target] = weight[:, source]
    return out


def _conv1(net: nn.Module) -> nn.Conv2d | None:
    backbone = getattr(net, "backbone", None)
    conv = getattr(backbone, "conv1", None) if backbone is not None else None
    return conv if isinstance(conv, nn.Conv2d) else None
