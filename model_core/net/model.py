"""DeepLabv3-ResNet50 for the 11 learned SCL classes, and the stages as freeze policies.

The network is torchvision's ``deeplabv3_resnet50`` with the last classifier
layer (and the auxiliary classifier's, when used) sized for ``scl.NUM_CLASSES``;
class index = SCL code - 1. Nothing here downloads: pretrained weights are
loaded separately by ``weights.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.segmentation import DeepLabV3, deeplabv3_resnet50

from .. import scl
from . import aspp, pixel_head

ARCHITECTURE = "deeplabv3_resnet50"
Stage = Literal["head", "layer4", "full"]
STAGES: tuple[str, ...] = ("head", "layer4", "full")

# Parameter-name prefixes that train in each stage; everything else is frozen.
_TRAINABLE: dict[str, tuple[str, ...]] = {
    "head": ("classifier.", "aux_classifier.", pixel_head.PREFIX),
    "layer4": ("classifier.", "aux_classifier.", pixel_head.PREFIX, "backbone.layer4."),
    "full": ("",),
}
HEAD_PREFIXES = _TRAINABLE["head"]


class SclDeepLab(DeepLabV3):
    """torchvision's DeepLabV3, optionally with a pixel head (``pixel_head.py``) whose logits add to its own."""

    def __init__(self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None) -> None:
        super().__init__(backbone, classifier, aux_classifier)
        self.pixel_head: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return forward(self, x)


def build_model(
    *, aux: bool = False, initialise: bool = True, aspp_rates: Sequence[int] = aspp.STANDARD_RATES,
    pixel_bands: int | None = None,
) -> nn.Module:
    """DeepLabv3-ResNet50 with 11 SCL outputs, randomly initialised; never downloads.

    Args:
        aux: also build the auxiliary FCN head on ``layer3`` (used only for its
            extra loss while training; prediction ignores it).
        initialise: False skips the random initialisation (about a second on a
            CPU) and leaves the tensors on the "meta" device, for
            ``load_state_dict(state, assign=True)`` with a complete state dict.
        aspp_rates: ASPP's atrous rates at output stride 8 (see ``aspp``).
        pixel_bands: add a pixel head reading this many bands (``pixel_head.py``); None for none.
    """
    if initialise:
        plain = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=scl.NUM_CLASSES, aux_loss=aux)
    else:
        with torch.device("meta"):
            plain = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=scl.NUM_CLASSES, aux_loss=aux)
    net = SclDeepLab(plain.backbone, plain.classifier, plain.aux_classifier)
    set_aspp_rates(net, aspp_rates)
    if pixel_bands is not None:
        pixel_head.attach(net, pixel_bands, scl.NUM_CLASSES)
    return net


def _aspp_convs(net: nn.Module) -> list[nn.Conv2d]:
    """The dilated 3x3 convolutions of a torchvision DeepLabHead's ASPP, in rate order; empty without one."""
    head = getattr(net, "classifier", None)
    block = head[0] if isinstance(head, nn.Sequential) and len(head) else None
    if type(block).__name__ != "ASPP":
        return []
    return [branch[0] for branch in block.convs if type(branch).__name__ == "ASPPConv"]


def set_aspp_rates(net: nn.Module, rates: Sequence[int]) -> bool:
    """Give ASPP's dilated convolutions these rates, in place; False (nothing changed) for a model without ASPP.

    The weights keep their shapes, so a state dict fits whatever the rates: the
    rates a model was trained with must come from its checkpoint.
    """
    convs = _aspp_convs(net)
    if not convs:
        return False
    if len(rates) != len(convs) or min(rates) < 1:
        raise ValueError(f"ASPP has {len(convs)} dilated branches; got rates {list(rates)}.")
    for conv, rate in zip(convs, rates):
        conv.dilation, conv.padding = (int(rate), int(rate)), (int(rate), int(rate))
    return True


def aspp_rates(net: nn.Module) -> tuple[int, ...] | None:
    """The rates of the model's ASPP (at output stride 8); ``None`` for a model without ASPP."""
    convs = _aspp_convs(net)
    return tuple(conv.dilation[0] for conv in convs) if convs else None


def is_trainable(name: str, stage: Stage) -> bool:
    """Whether the parameter called ``name`` trains in ``stage``."""
    if stage not in _TRAINABLE:
        raise ValueError(f'Unknown stage "{stage}"; use one of {", ".join(STAGES)}.')
    return name.startswith(_TRAINABLE[stage])


def freeze_for(model: nn.Module, stage: Stage) -> None:
    """Leave only the head (and for "layer4" the last ResNet stage; for "full" all) trainable.

    Frozen parameters get ``requires_grad=False``. Frozen BatchNorm layers also go
    to eval mode: in train mode their running statistics would keep drifting
    although no weight changes. ``model.train()`` undoes that, so call
    ``train_mode(model)`` instead, which re-applies it.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name, stage))
    if model.training:
        train_mode(model)


def train_mode(model: nn.Module) -> None:
    """``model.train()``, then frozen BatchNorm layers back to eval (see ``freeze_for``)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def trainable_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters split into (head, pixel head, backbone), for separate learning rates."""
    head, pixel, backbone = [], [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            if name.startswith(pixel_head.PREFIX):
                pixel.append(param)
            else:
                (head if name.startswith(HEAD_PREFIXES) else backbone).append(param)
    return head, pixel, backbone


def forward(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's forward pass, with the frozen leading part of the backbone run without autograd.

    Same result as ``model(x)``; for DeepLabV3 the backbone layers before the first
    trainable one run under ``torch.no_grad()``, so a head-only step costs about a
    forward pass. Any other module (a test stand-in) is simply called.
    """
    if not isinstance(model, DeepLabV3):
        return model(x)
    size, image = x.shape[-2:], x
    backbone = model.backbone
    features: OrderedDict[str, torch.Tensor] = OrderedDict()
    grad = False
    for name, module in backbone.items():
        grad = grad or any(p.requires_grad for p in module.parameters())
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            x = module(x)
        if name in backbone.return_layers:
            features[backbone.return_layers[name]] = x
    result: OrderedDict[str, torch.Tensor] = OrderedDict()
    out = F.interpolate(model.classifier(features["out"]), size=size, mode="bilinear", align_corners=False)
    result["out"] = pixel_head.add_to(model, out, image)
    if model.aux_classifier is not None:
        aux = model.aux_classifier(features["aux"])
        result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=False)
    return result


def has_aux(model: nn.Module) -> bool:
    """Whether the model carries an auxiliary classifier."""
    return getattr(model, "aux_classifier", None) is not None
