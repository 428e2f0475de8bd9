"""Training throughput: the plugin's ``Loop`` against a naive loop over the same batches.

The naive loop is the seed's way: float32, NCHW, every parameter still requiring
gradients (full autograd through the frozen backbone, whose gradients are then
thrown away), the optimizer stepping only the stage's trainable parameters.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.net import model as model_lib
from scl_deeplab.model_core.net.device import pick_device, pick_precision
from scl_deeplab.model_core.progress import SILENT
from scl_deeplab.model_core.training.dataset import check_patches, load_manifest
from scl_deeplab.model_core.training.loop import Loop
from scl_deeplab.model_core.training.train import TrainConfig
from torch import nn
from workloads import META, scene


def patches(folder: Path, scene_px: int, patch_px: int) -> Path:
    """A patches manifest cut from a synthetic scene."""
    image = scene(folder, f"train_scene_{scene_px}", scene_px, scene_px, seed=1)
    out = folder / f"patches_{scene_px}_{patch_px}"
    if not (out / "index.json").exists():
        make_patches(image, folder / f"train_scene_{scene_px}_scl.tif", out,
                     PatchConfig(patch_size_px=patch_px, min_valid_fraction=0.9, val_fraction=0.2))
    return out / "index.json"


def _epochs(run_epoch, reps: int) -> dict[str, Any]:
    """Patches per second of ``run_epoch`` (returns patches seen): one warm-up epoch, then ``reps`` timed."""
    run_epoch()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = run_epoch()
        rates.append(n / (time.perf_counter() - t0))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "n": reps}


def plugin_rate(manifest_path: Path, stage: str, batch: int, reps: int) -> dict[str, Any]:
    """The plugin's training step (``loop.Loop.train_epoch``) in patches per second."""
    manifest = load_manifest(manifest_path)
    counts = check_patches(manifest)
    device = pick_device("auto")
    precision = pick_precision(device, "auto")
    torch.manual_seed(0)
    net = model_lib.build_model()
    model_lib.freeze_for(net, stage)  # type: ignore[arg-type]
    net.to(device=device, memory_format=torch.channels_last)
    config = TrainConfig(stage=stage, epochs=reps + 1, batch_size=batch)
    loop = Loop(net, manifest, config, device, precision.autocast_dtype, counts["train"],
                META["input"]["mean"], META["input"]["std"])
    seen = len(loop.train_loader) * batch
    done = [0]

    def epoch() -> int:
        done[0] += 1
        loop.train_epoch(done[0], SILENT)
        return seen

    result = _epochs(epoch, reps)
    result["precision"] = precision.name
    return result


def naive_rate(manifest_path: Path, stage: str, batch: int, reps: int) -> dict[str, Any]:
    """The naive training step in patches per second, on the same loader."""
    manifest = load_manifest(manifest_path)
    counts = check_patches(manifest)
    device = pick_device("auto")
    torch.manual_seed(0)
    net = model_lib.build_model().to(device)
    config = TrainConfig(stage=stage, epochs=reps + 1, batch_size=batch)
    loader = Loop(net, manifest, config, device, None, counts["train"],
                  META["input"]["mean"], META["input"]["std"]).train_loader
    trainable = [p for name, p in net.named_parameters() if model_lib.is_trainable(name, stage)]  # type: ignore[arg-type]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    criterion = nn.CrossEntropyLoss(ignore_index=scl.IGNORE_INDEX)

    def epoch() -> int:
        net.train()
        n = 0
        for image, target in loader:
            image, target = image.to(device), target.to(device)
            loss = criterion(net(image)["out"], target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n += image.shape[0]
        return n

    return _epochs(epoch, reps)
