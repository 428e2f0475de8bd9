"""Training throughput: the plugin's ``Loop`` against a naive loop over the same batches.

The two loops take turns, epoch by epoch (naive, plugin, naive, plugin, ...), and the
speedup is the median of each pair's ratio: on a shared machine the load drifts
within a minute, and timing all naive epochs first and all plugin epochs after made
two quick runs disagree by up to 3x.

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


def _rates(times: list[float], seen: int) -> dict[str, Any]:
    rates = [seen / t for t in times]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "n": len(rates)}


def paired_rates(manifest_path: Path, stage: str, batch: int, reps: int) -> dict[str, Any]:
    """Naive and plugin patches per second, their epochs in turns; ``speedup`` is the median pair ratio."""
    naive, plugin = naive_epoch(manifest_path, stage, batch), plugin_epoch(manifest_path, stage, batch)
    naive[0](), plugin[0]()  # warm-up
    times: dict[str, list[float]] = {"naive": [], "plugin": []}
    seen = {}
    for _ in range(reps):
        for name, (epoch, _info) in (("naive", naive), ("plugin", plugin)):
            t0 = time.perf_counter()
            seen[name] = epoch()
            times[name].append(time.perf_counter() - t0)
    ratios = [(seen["plugin"] / p) / (seen["naive"] / n) for n, p in zip(times["naive"], times["plugin"])]
    return {"naive": _rates(times["naive"], seen["naive"]),
            "plugin": {**_rates(times["plugin"], seen["plugin"]), **plugin[1]},
            "speedup": statistics.median(ratios), "speedups": ratios}


def plugin_rate(manifest_path: Path, stage: str, batch: int, reps: int) -> dict[str, Any]:
    """The plugin's training step (``loop.Loop.train_epoch``) in patches per second."""
    epoch, info = plugin_epoch(manifest_path, stage, batch)
    return {**_epochs(epoch, reps), **info}


def plugin_epoch(manifest_path: Path, stage: str, batch: int, reps: int = 8) -> tuple[Any, dict[str, Any]]:
    """One epoch of the plugin's training step (returns the patches it saw), and its precision."""
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

    return epoch, {"precision": precision.name}


def naive_rate(manifest_path: Path, stage: str, batch: int, reps: int) -> dict[str, Any]:
    """The naive training step in patches per second, on the same loader."""
    return _epochs(naive_epoch(manifest_path, stage, batch)[0], reps)


def naive_epoch(manifest_path: Path, stage: str, batch: int, reps: int = 8) -> tuple[Any, dict[str, Any]]:
    """One epoch of the naive training step (returns the patches it saw)."""
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

    return epoch, {}
