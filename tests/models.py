"""Checkpoints of the real DeepLabv3-ResNet50 with random weights, as the tests' stand-in for a trained model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from scl_deeplab.model_core.net.checkpoint import ModelInput, input_to_meta
from scl_deeplab.model_core.net.weights import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import numpy as np
    import torch

# What a checkpoint records about its input: uint8 true colour with ImageNet's normalisation.
META = {**input_to_meta(ModelInput.rgb("uint8", 255.0, IMAGENET_MEAN, IMAGENET_STD)), "patch_size": 64}



@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then give back the suite's count (later tests compare with it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_random_deeplab(path: Path, seed: int = 0, meta: dict | None = None) -> Path:
    """Save DeepLabv3-ResNet50 initialised with ``seed`` as a checkpoint at ``path`` (with ``META`` by default)."""
    import torch
    from scl_deeplab.model_core.net.checkpoint import save_checkpoint
    from scl_deeplab.model_core.net.model import build_model

    torch.manual_seed(seed)
    save_checkpoint(path, build_model().state_dict(), META if meta is None else meta)
    return path


# Flat regions of vegetation (left), water (top right) and cloud (bottom right), for tests that need a
# model to see clear classes.
BLOCK_COLOURS = {4: (40, 120, 40), 6: (20, 30, 90), 9: (230, 230, 235)}


def colour_blocks(side: int) -> tuple["np.ndarray", "np.ndarray"]:
    """(3, side, side) uint8 true colour of three flat classes with a little noise, and their SCL codes."""
    import numpy as np

    codes = np.full((side, side), 4, dtype=np.uint8)
    codes[: side // 2, side // 2 :] = 6
    codes[side // 2 :, side // 2 :] = 9
    lut = np.zeros((256, 3), np.float32)
    for code, rgb in BLOCK_COLOURS.items():
        lut[code] = rgb
    rgb = np.moveaxis(lut[codes], -1, 0) + np.random.default_rng(0).normal(0, 4, (3, side, side))
    return np.clip(rgb, 1, 255).astype(np.uint8), codes


def fit_last_layer(net: "torch.nn.Module", features: "torch.Tensor", target: "torch.Tensor") -> None:
    """Set DeepLab's last 1x1 layer to a ridge fit of ``target`` (class indices, one per row) on ``features``.

    ``features`` is (positions, channels): what the layer before the last one returns,
    one row per position. Random features plus a fitted last layer give a model whose
    classes mean something, without training.
    """
    import torch
    from scl_deeplab.model_core import scl

    f = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    y = torch.nn.functional.one_hot(target, scl.NUM_CLASSES).double()
    w = torch.linalg.solve(f.T @ f + 1e-2 * len(f) * torch.eye(f.shape[1], dtype=f.dtype), f.T @ y)
    with torch.no_grad():
        net.classifier[-1].weight.copy_(w[:-1].T.float().reshape(scl.NUM_CLASSES, -1, 1, 1))
        net.classifier[-1].bias.copy_(w[-1].float())
