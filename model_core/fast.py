"""The fast prediction mode: DeepLabv3 run at output stride 16 instead of 8.

The plugin's DeepLabv3-ResNet50 keeps ``layer3`` and ``layer4`` at 1/8 of the
input by dilating their convolutions (output stride 8). Turning the dilation of
``layer3`` back into a stride of 2, halving the dilations of ``layer4`` and the
ASPP rates gives the same network at output stride 16 (the weights fit
unchanged): ``layer3``, ``layer4`` and the head then see a quarter of the
positions, which is most of the work, so a tile runs about 2-3x faster. Class
maps are coarser at edges; the benchmark measures how often they agree with the
plain mode.
"""

from __future__ import annotations

import copy

from torch import nn

OUTPUT_STRIDE_FAST = 16


def _halve_dilation(conv: nn.Conv2d) -> None:
    """A 3x3 convolution's dilation (and with it its padding) halved, at least 1."""
    if conv.kernel_size == (3, 3) and conv.dilation[0] > 1:
        d = conv.dilation[0] // 2
        conv.dilation, conv.padding = (d, d), (d, d)


def output_stride_16(model: nn.Module) -> nn.Module:
    """A copy of a torchvision DeepLabv3-ResNet (output stride 8) that runs at output stride 16.

    The copy shares the weight tensors with ``model`` (no extra memory for weights);
    only the module objects are new, so ``model`` itself is unchanged. A model
    without ``backbone.layer3``/``layer4`` and an ASPP head is returned as it is.
    """
    backbone = getattr(model, "backbone", None)
    layer3, layer4 = getattr(backbone, "layer3", None), getattr(backbone, "layer4", None)
    aspp = _aspp(model)
    if layer3 is None or layer4 is None or aspp is None:
        return model
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    fast = copy.deepcopy(model, memo=shared)
    first = fast.backbone.layer3[0]
    if first.conv2.stride != (1, 1):
        return model  # already strided: nothing to do
    first.conv2.stride = (2, 2)
    if first.downsample is not None:
        first.downsample[0].stride = (2, 2)
    for layer in (fast.backbone.layer3, fast.backbone.layer4):
        for module in layer.modules():
            if isinstance(module, nn.Conv2d):
                _halve_dilation(module)
    for module in _aspp(fast).modules():
        if isinstance(module, nn.Conv2d):
            _halve_dilation(module)
    return fast


def _aspp(model: nn.Module) -> nn.Module | None:
    """The ASPP block of a torchvision DeepLabHead, if the model has one."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Sequential) and len(head) and type(head[0]).__name__ == "ASPP":
        return head[0]
    return None
