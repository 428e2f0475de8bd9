"""BatchNorm running statistics, re-estimated for the weights as they are now.

In train mode a BatchNorm layer normalises with the statistics of the batch and
keeps an exponential average (momentum 0.1) for eval mode. With small batches
and weights that move fast, as when the whole network trains from random
weights, that average lags the weights by many steps, and at validation the
eval-mode network sees features on another scale than the ones its head learnt
on: it predicts one class everywhere while the training loss falls. So before
each validation (and so before each checkpoint is written) the statistics of
the layers that train are recomputed as a plain average over a few training
batches, with the network otherwise in eval mode (no dropout), as it will run
at prediction time. Frozen layers are never touched: their statistics belong to
their frozen weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

PATCHES = 32  # patches per re-estimation: enough for stable means, a small share of an epoch's work


def trainable_batchnorms(net: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``net`` whose weights train (frozen ones stay as they are)."""
    return [
        m for m in net.modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
        and any(p.requires_grad for p in m.parameters(recurse=False))
    ]


@torch.no_grad()
def reestimate(
    net: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], object],
    *,
    max_batches: int,
) -> int:
    """Recompute the running statistics of ``net``'s trainable BatchNorm layers over ``batches``.

    Args:
        net: the model; left in eval mode.
        batches: input batches (on the model's device), at least two images each.
        forward: runs ``net`` on one batch (under the caller's autocast).
        max_batches: stop after this many batches.

    Returns:
        The number of batches used; 0 leaves every statistic as it was.
    """
    layers = trainable_batchnorms(net)
    if not layers or max_batches < 1:
        net.eval()
        return 0
    saved = [(m, m.momentum, {k: v.clone() for k, v in m.named_buffers(recurse=False)}) for m in layers]
    net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
        m.train()
    used = 0
    try:
        for image in batches:
            forward(image)
            used += 1
            if used >= max_batches:
                break
    finally:
        for m, momentum, buffers in saved:
            m.momentum = momentum
            m.eval()
            if used == 0:
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
    return used
