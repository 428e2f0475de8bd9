"""The fast prediction mode: DeepLabv3's backbone and ASPP run at output stride 16 instead of 8.

The plugin's DeepLabv3-ResNet50 keeps ``layer3`` and ``layer4`` at 1/8 of the
input by dilating their convolutions (output stride 8). Turning the dilation of
``layer3`` back into a stride of 2 and halving the dilations of ``layer4`` and the
ASPP rates gives the same network at output stride 16 (the weights fit
unchanged). ``layer3``, ``layer4`` and ASPP then see a quarter of the positions,
which is most of the work, so a tile runs about 2-3x faster.

The positions they see are exactly the even rows and columns of the stride-8
grid: a 1x1 convolution or a 3x3 one dilated by an even rate keeps even positions
apart from odd ones, so every stride-16 feature equals the stride-8 feature at
that position (only ASPP's image pooling averages over fewer positions). The
odd positions are then filled in by bilinear interpolation of ASPP's output, and
the head's last 3x3 convolution runs on the stride-8 grid with the spacing it was
trained with. Class maps are slightly smoother at edges; the benchmark measures
how often they agree with the plain mode.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from . import pixel_head

OUTPUT_STRIDE_FAST = 16


def _halve_dilation(conv: nn.Conv2d) -> None:
    """A 3x3 convolution's dilation (and with it its padding) halved, at least 1.

    An odd dilation (ASPP rates scaled to small patches, ``aspp.scaled_rates``)
    rounds down: the tap lands one stride-8 position nearer, so there fast mode
    approximates the plain one instead of matching it at even positions.
    """
    if conv.kernel_size == (3, 3) and conv.dilation[0] > 1:
        d = conv.dilation[0] // 2
        conv.dilation, conv.padding = (d, d), (d, d)


def to_stride_8(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Stride-16 features (N, C, h, w) on the stride-8 grid (N, C, height, width).

    Stride-16 position i is stride-8 position 2i: those are copied, positions in
    between are interpolated linearly, and a last row or column past 2(h-1) (when
    ``height`` is even) repeats its neighbour.
    """
    h, w = features.shape[-2:]
    up = F.interpolate(features.float(), size=(2 * h - 1, 2 * w - 1), mode="bilinear", align_corners=True)
    up = F.pad(up, (0, width - (2 * w - 1), 0, height - (2 * h - 1)), mode="replicate")
    return up.to(features.dtype).contiguous(memory_format=torch.channels_last)


class FastDeepLab(nn.Module):
    """DeepLabv3 with backbone and ASPP at output stride 16 and the rest of the head at 8.

    It has DeepLabv3's ``backbone`` and ``classifier`` (ASPP first), so the
    prediction copy treats it as the plain model; only ``forward`` differs.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Sequential, pixel_head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = None
        self.pixel_head = pixel_head  # full resolution already: unchanged by the stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = x.shape[-2:]
        features = self.classifier[0](self.backbone(x)["out"])
        y = to_stride_8(features, math.ceil(height / 8), math.ceil(width / 8))
        for module in list(self.classifier)[1:]:
            y = module(y)
        out = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False)
        return OrderedDict(out=pixel_head.add_to(self, out, x))


def output_stride_16(model: nn.Module) -> nn.Module:
    """A ``FastDeepLab`` copy of a torchvision DeepLabv3-ResNet (output stride 8).

    The copy shares the weight tensors with ``model`` (no extra memory for weights);
    only the module objects are new, so ``model`` itself is unchanged. A model
    without ``backbone.layer3``/``layer4`` and an ASPP head, or one already at
    stride 16, is returned as it is.
    """
    backbone = getattr(model, "backbone", None)
    layer3, layer4 = getattr(backbone, "layer3", None), getattr(backbone, "layer4", None)
    aspp = aspp_block(model)
    if layer3 is None or layer4 is None or aspp is None:
        return model
    if layer3[0].conv2.stride != (1, 1):
        return model  # already strided: nothing to do
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    head = getattr(model, "pixel_head", None)
    fast = FastDeepLab(copy.deepcopy(model.backbone, memo=shared), copy.deepcopy(model.classifier, memo=shared),
                       copy.deepcopy(head, memo=shared) if head is not None else None)
    first = fast.backbone.layer3[0]
    first.conv2.stride = (2, 2)
    if first.downsample is not None:
        first.downsample[0].stride = (2, 2)
    for layer in (fast.backbone.layer3, fast.backbone.layer4):
        for module in layer.modules():
            if isinstance(module, nn.Conv2d):
                _halve_dilation(module)
    for module in aspp_block(fast).modules():
        if isinstance(module, nn.Conv2d):
            _halve_dilation(module)
    return fast.train(model.training)


def aspp_block(model: nn.Module) -> nn.Module | None:
    """The ASPP block of a torchvision DeepLabHead, if the model has one."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Sequential) and len(head) and type(head[0]).__name__ == "ASPP":
        return head[0]
    return None
