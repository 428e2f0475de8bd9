"""Run by torchrun in test_distributed.py: one epoch of the real DeepLabv3, in float64, without dropout.

Dropout draws its masks per process, so no two process layouts could agree; everything else
(gradients, BatchNorm statistics, validation) must. Float64, because a random DeepLab on 32 px
patches is so ill-conditioned that float32 rounding alone moves some gradients by tens of percent
(measured: float32 vs float64 on one process); in float64 one and two processes agree to ~1e-7.
Arguments: PATCHES STAGE BATCH OUTPUT [RESUME].
"""

from __future__ import annotations

import sys

import torch
from scl_deeplab.model_core.net import model as model_lib
from scl_deeplab.model_core.progress import PrintProgress
from scl_deeplab.model_core.training.train import TrainConfig, train
from torch import nn


def float64_without_dropout(*, aux: bool = False) -> nn.Module:
    net = model_lib.build_model(aux=aux).double()
    for module in net.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    net.backbone.conv1.register_forward_pre_hook(lambda module, args: (args[0].double(),))
    return net


if __name__ == "__main__":
    patches, stage, batch, output = sys.argv[1:5]
    resume = sys.argv[5] if len(sys.argv) > 5 else None
    torch.use_deterministic_algorithms(True)
    config = TrainConfig(stage=stage, epochs=1, batch_size=int(batch), learning_rate=1e-3, pretrained="none",
                         device="cpu", precision="float32", seed=3)
    train(patches, config, output, resume=resume, progress=PrintProgress(), build=float64_without_dropout)
