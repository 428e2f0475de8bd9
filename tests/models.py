"""Checkpoints of the real DeepLabv3-ResNet50 with random weights, as the tests' stand-in for a trained model."""

from __future__ import annotations

from pathlib import Path

# What a checkpoint records about its input: uint8 true colour with ImageNet's normalisation.
META = {
    "input": {"bands": 3, "band_order": ["red", "green", "blue"], "dtype": "uint8", "scale": 255.0,
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "patch_size": 64,
}


def write_random_deeplab(path: Path, seed: int = 0) -> Path:
    """Save DeepLabv3-ResNet50 initialised with ``seed`` as a checkpoint at ``path``."""
    import torch

    from scl_deeplab.model_core.checkpoint import save_checkpoint
    from scl_deeplab.model_core.model import build_model

    torch.manual_seed(seed)
    save_checkpoint(path, build_model().state_dict(), META)
    return path
