"""The pixel head: a small per-pixel classifier of the band values whose logits add to DeepLab's.

DeepLabv3 classifies at 1/8 of the input and interpolates its logits back to
full size, so a class map can only change smoothly over about eight pixels, and
a network that starts from random weights needs many steps before its features
separate colours as finely as the SCL does. On a real 60 m scene a colour lookup
table (each pixel's quantised RGB -> its most frequent code) beat the whole
network after 20 minutes of training. The pixel head gives every pixel that
lookup's knowledge directly: three 1x1 convolutions on the normalised bands
(bands -> 64 -> 64 -> classes), whose logits are added to DeepLab's upsampled
logits. It learns the colour rule within a few hundred steps; the network then
only has to learn what context adds (cloud shadow beside cloud, dark areas,
water bodies' outlines).

It costs about 5 thousand multiply-adds a pixel (DeepLab several hundred thousand) and
keeps float32 even when the rest of the network runs in bfloat16: its inputs
are the raw normalised bands, where bfloat16's 8-bit mantissa would merge
neighbouring colours. A model trained without one (older checkpoints) has no
``pixel_head`` keys and runs exactly as before.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

PREFIX = "pixel_head."
WIDTH = 64
# Its learning rate over the head's. Three 1x1 layers on normalised bands take large steps well, and at the
# head's rate (1e-3) a 60 m scene's colour rule was still half learnt after 112 steps (0.61 pixel accuracy on
# the scene's other half; 0.69 at 10x, where a colour lookup table reaches 0.67).
LR_FACTOR = 10.0


class PixelHead(nn.Sequential):
    """Three 1x1 convolutions, ``bands`` -> ``WIDTH`` -> ``WIDTH`` -> ``classes``, with ReLUs in between."""

    def __init__(self, bands: int, classes: int, *, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(
            nn.Conv2d(bands, WIDTH, 1, device=device, dtype=dtype),
            nn.ReLU(inplace=True),
            nn.Conv2d(WIDTH, WIDTH, 1, device=device, dtype=dtype),
            nn.ReLU(inplace=True),
            nn.Conv2d(WIDTH, classes, 1, device=device, dtype=dtype),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Logits (N, classes, H, W) in float32, whatever the input's type."""
        x = x.to(self[0].weight.dtype)
        return super().forward(x)


def attach(net: nn.Module, bands: int, classes: int) -> PixelHead:
    """Give ``net`` a randomly initialised pixel head reading ``bands`` bands (replacing any it had), on the
    device and in the floating-point type of the network's own weights."""
    like = next(iter(net.parameters()), torch.empty(0))
    head = PixelHead(bands, classes, device=like.device, dtype=like.dtype if like.is_floating_point() else None)
    net.pixel_head = head
    return head


def of(net: nn.Module) -> PixelHead | None:
    """The model's pixel head, or None."""
    head = getattr(net, "pixel_head", None)
    return head if isinstance(head, PixelHead) else None


def add_to(net: nn.Module, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``logits`` (full size) plus the pixel head's logits of ``image`` when ``net`` has a pixel head."""
    head = of(net)
    return logits if head is None else logits + head(image)


def in_state(state: dict[str, torch.Tensor]) -> int | None:
    """How many bands the pixel head in a state dict reads; None when the state dict has none."""
    first = state.get(PREFIX + "0.weight")
    return int(first.shape[1]) if isinstance(first, torch.Tensor) and first.dim() == 4 else None
