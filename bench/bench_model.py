"""The model the benchmark predicts with: trained briefly from random weights by the plugin, cached between runs.

Speed does not depend on the weights, but agreement between two ways of running
a model does: a model whose classes are near-ties flips pixels at any rounding.
Pretrained weights are not available here, so the bench model is what a user
without them trains: the plugin's DeepLabv3 with the pixel head, trained from
random weights by the from-scratch recipe (the full network on random 128 px
crops; ``model_core.training.train``) for a few epochs on patches of a synthetic
scene. Until version 2 it was a classifier head on a frozen random backbone:
validation pixel accuracy 0.25, near-ties everywhere, so int8 and fast mode were
judged by roundings a trained model does not show. The result is cached under
``bench/.cache/`` keyed by these settings and the torch version, so only the
first run pays for the training (80 s on two cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import train_bench
from bench_cache import CACHE
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.training.train import TrainConfig, train

SETTINGS: dict[str, Any] = {
    "version": 3,
    "pixel_head": True,  # as every new model has (model_core/net/pixel_head.py)
    "crop_px": 128,  # the from-scratch recipe's (model_core/training/recipe.py)
    "train_scene_px": 1024,
    "patch_px": 256,
    "stage": "full",
    "epochs": 8,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "seed": 0,
    "torch": torch.__version__,
}


def key(settings: dict[str, Any] = SETTINGS) -> str:
    """A short hash of ``settings``: the cache file's name."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def trained_model(scratch: Path, settings: dict[str, Any] = SETTINGS) -> tuple[Path, dict[str, Any]]:
    """The cached bench checkpoint, trained first if it is not cached yet; and how it was made."""
    cached = CACHE / f"bench_model_{key(settings)}.pt"
    info_path = cached.with_suffix(".json")
    if cached.exists() and info_path.exists():
        return cached, {**json.loads(info_path.read_text(encoding="utf-8")), "cached": True}
    started = time.perf_counter()
    manifest = train_bench.patches(scratch, settings["train_scene_px"], settings["patch_px"])
    config = TrainConfig(stage=settings["stage"], epochs=settings["epochs"], batch_size=settings["batch_size"],
                         learning_rate=settings["learning_rate"], pretrained="none", seed=settings["seed"],
                         pixel_head=settings["pixel_head"], crop_px=settings["crop_px"])
    out = scratch / "bench_model_trained.pt"
    result = train(manifest, config, out)
    info = {"settings": settings, "val_pixel_accuracy": result.pixel_accuracy,
            "val_mean_iou": result.mean_iou, "best_epoch": result.best_epoch,
            "build_s": time.perf_counter() - started}
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".pt.partial")
    shutil.copyfile(out, partial)
    os.replace(partial, cached)
    info_path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return cached, {**info, "cached": False}


def user_model(path: Path) -> dict[str, Any]:
    """What the bench reports about a checkpoint given with ``--model`` (it must be a plugin checkpoint)."""
    meta = checkpoint.load_checkpoint(path)["meta"]
    best = meta.get("best") or {}
    return {"path": str(path), "val_pixel_accuracy": best.get("pixel_accuracy"), "val_mean_iou": best.get("mean_iou"),
            "stages": [s.get("stage") for s in meta.get("stages", [])], "cached": None}
