"""A copy of a model made for prediction only: BatchNorm folded away, weights in the working precision.

Prediction never trains, so each BatchNorm that follows a convolution is a fixed
per-channel scale and shift and can be folded into that convolution's weights
(one pass over each activation saved). Where the device computes bfloat16
natively (``device.pick_precision``), the copy's weights and activations are cast
to bfloat16 outright instead of running under autocast, which would re-cast every
weight on every call and run BatchNorm in between; DeepLab's last 1x1 layer stays
in float32 so logits and their upsampling keep full precision. Elsewhere (e.g.
AVX2-only CPUs, where bfloat16 is slow) the copy stays float32. ASPP's dilated
convolutions run as nine 1x1 products over the positions each tap actually sees
(``TapConv2d``) on CPUs, which skips the zero padding and avoids slow dilated
kernels: on a 512 px tile those took 60 % of a bfloat16 forward pass. In float32 on
a CPU, the other 3x3 convolutions with at least 128 input channels run by
Winograd's F(4x4, 3x3) (``winograd``), a quarter of the multiplications. The
auxiliary head, which prediction never reads, is dropped.

The caller's model is never changed; prepared copies are cached per model and
rebuilt when its weights change.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import pixel_head
from .device import Precision
from .fast import aspp_block, output_stride_16
from .winograd import WinogradConv2d, same_size_3x3

# torchvision's ResNet blocks name their pairs conv1/bn1, conv2/bn2, conv3/bn3.
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


@dataclass(frozen=True)
class PreparedModel:
    """A model ready for prediction and how to feed it.

    ``input_dtype`` is the dtype its input must have; ``autocast_dtype`` is set
    only where the model could not be cast as a whole and still runs under autocast.
    """

    model: nn.Module
    input_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    folded: int


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with each BatchNorm that directly follows a convolution folded into it.

    Pairs are those of a ``Sequential`` (conv then BatchNorm) and torchvision's
    ``convN``/``bnN`` attributes, where the data flow is known; anything else is
    left as it is. Returns the copy and the number of folded pairs; ``model``
    stays unchanged and shares no tensor with the copy.
    """
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    folded_model = copy.deepcopy(model, memo=shared).eval()
    count = 0
    with torch.no_grad():
        for module in folded_model.modules():
            for conv_name, bn_name in _NAMED_PAIRS:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if conv is not None and bn is not None and _foldable(conv, bn):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
                    count += 1
            if isinstance(module, nn.Sequential):
                for i in range(len(module) - 1):
                    if _foldable(module[i], module[i + 1]):
                        module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                        module[i + 1] = nn.Identity()
                        count += 1
        # What was not folded is still shared: own it, so casting the copy cannot touch ``model``.
        for module in folded_model.modules():
            for name, param in module._parameters.items():
                if param is not None and id(param) in shared:
                    module._parameters[name] = nn.Parameter(param.detach().clone(), param.requires_grad)
            for name, buf in module._buffers.items():
                if buf is not None and id(buf) in shared:
                    module._buffers[name] = buf.clone()
    return folded_model, count


class TapConv2d(nn.Module):
    """A dilated 3x3 convolution (stride 1, zero padding = dilation) computed as its nine 1x1 taps.

    Each tap is a matrix product over only the output positions where it sees the
    input: at ASPP's large rates most of a tap falls on the zero padding, which a
    plain convolution multiplies anyway. The nine products are summed in float32.
    Direct dilated kernels are also slow on CPUs (about a tenth of the rate of an
    undilated convolution with bfloat16 here), the 1x1 products run at full rate.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.dilation = conv.dilation
        weight = conv.weight.detach()
        self.taps = nn.ParameterList(
            nn.Parameter(weight[:, :, i : i + 1, j : j + 1].contiguous(), requires_grad=False)
            for i in range(3)
            for j in range(3)
        )
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    @staticmethod
    def fits(module: nn.Module) -> bool:
        """Whether ``module`` is a dilated ``same_size_3x3`` convolution, which this class computes."""
        return same_size_3x3(module) and module.dilation[0] > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = torch.nn.functional.conv2d(x, self.taps[4], self.bias).float()
        for index in (0, 1, 2, 3, 5, 6, 7, 8):
            dy, dx = (index // 3 - 1) * self.dilation[0], (index % 3 - 1) * self.dilation[1]
            y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
            if y0 < y1 and x0 < x1:
                part = torch.nn.functional.conv2d(x[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx], self.taps[index])
                out[..., y0:y1, x0:x1] += part
        return out.to(x.dtype)


def swap_modules(root: nn.Module, fits: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace, in place, every module below ``root`` for which ``fits`` holds by ``make(module)``; returns how many."""
    count = 0
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if fits(child):
                setattr(module, name, make(child))
                count += 1
    return count


def _float32_logits(model: nn.Module) -> bool:
    """Keep DeepLab's last classifier layer in float32 (its input cast up); False when there is none."""
    head = getattr(model, "classifier", None)
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else None
    if not isinstance(last, nn.Conv2d):
        return False
    last.float()
    last.register_forward_pre_hook(lambda _module, args: (args[0].float(),))
    return True


def prepare(model: nn.Module, precision: Precision, *, fast: bool = False) -> PreparedModel:
    """A prediction-only copy of ``model`` for ``precision`` (backbone and ASPP at output stride 16 with ``fast``).

    Under bfloat16 the copy is cast whole when it is a DeepLab model (its logits
    stay float32); any other model keeps float32 weights and runs under autocast.
    Float16 (older CUDA GPUs) also stays under autocast, which keeps the
    overflow-prone operations in float32.
    """
    source = output_stride_16(model) if fast else model
    if getattr(source, "aux_classifier", None) is not None:
        source = copy.copy(source)  # shallow, with its own module table: the model keeps its aux head
        source._modules = {**source._modules, "aux_classifier": None}
    prepared, count = fold_batchnorm(source)
    device = next(iter(model.parameters()), torch.empty(0)).device
    if device.type == "cpu":  # measured on CPUs only; GPUs have fast dilated kernels of their own
        aspp = aspp_block(prepared)
        if aspp is not None:  # its dilated convolutions as 1x1 taps
            swap_modules(aspp, TapConv2d.fits, TapConv2d)
    prepared.to(memory_format=torch.channels_last)
    dtype = precision.autocast_dtype
    if dtype is torch.bfloat16 and getattr(prepared, "classifier", None) is not None:
        prepared.to(torch.bfloat16)
        _float32_logits(prepared)
        head = pixel_head.of(prepared)
        if head is not None:  # reads the raw bands: kept float32 (pixel_head.py)
            head.float()
        return PreparedModel(prepared.to(device), torch.bfloat16, None, count)
    if dtype is None and device.type == "cpu":
        swap_modules(prepared, WinogradConv2d.fits, WinogradConv2d)
    return PreparedModel(prepared.to(device), torch.float32, dtype, count)  # type: ignore[arg-type]


def _fingerprint(model: nn.Module) -> tuple[int, ...]:
    """Changes whenever a weight or buffer of ``model`` is replaced or changed in place."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple(x for t in tensors for x in (id(t), t._version))


_PREPARED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], dict[tuple[str, bool], PreparedModel]]]
_PREPARED = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def prepared(model: nn.Module, precision: Precision, *, fast: bool = False) -> PreparedModel:
    """``prepare``, cached per model: batch runs over many scenes fold and cast once.

    A model whose weights changed since (training in between, a loaded state
    dict) is prepared again.
    """
    fingerprint = _fingerprint(model)
    key = (precision.name, fast)
    with _LOCK:
        entry = _PREPARED.get(model)
        if entry is None or entry[0] != fingerprint:
            entry = _PREPARED[model] = (fingerprint, {})
        hit = entry[1].get(key)
        if hit is None:
            hit = entry[1][key] = prepare(model, precision, fast=fast)
    return hit


def clear_prepared() -> None:
    """Forget all prepared copies (frees their memory)."""
    with _LOCK:
        _PREPARED.clear()
