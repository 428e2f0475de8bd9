"""`make accuracy`: train on some scenes, score on other scenes, beside two baselines.

End to end through the functions the algorithms call, with their defaults:
make_patches on all training scenes at once (Make patches with several scenes),
train on the manifest (Train head: with no pretrained weights on disk, the
from-scratch recipe, on random 128 px crops of the patches),
predict_scene_from_checkpoint on each evaluation scene (Predict, default tile
size) and evaluate_scene against its SCL (Evaluate). The confusion matrices of
all evaluation scenes add up to one score. Beside it, on the same pixels: the
majority class of the training patches, and the colour lookup
(``model_core/evaluation/baselines.py``).

    make accuracy [TRAIN=train.txt VAL=val.txt] [MINUTES=20]

Scene lists: one ``image,scl`` pair a line (``accuracy_scenes.py``); without them
synthetic sample scenes. MINUTES bounds the training time: the number of epochs
is set from the measured time of a training step, and training stops at the
bound anyway, keeping the best complete epoch. Prints one table, then the
results as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from accuracy_scenes import Scene, read_scene_list, sample_scenes
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.bands import parse_bands
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.rasters import onto_grid
from scl_deeplab.model_core.data.scenes import Scene as SceneFiles
from scl_deeplab.model_core.errors import Canceled
from scl_deeplab.model_core.evaluation.baselines import baseline_confusions, fit_lookup
from scl_deeplab.model_core.evaluation.evaluate import evaluate_scene
from scl_deeplab.model_core.evaluation.metrics import Scores, confusion_from_codes, scores
from scl_deeplab.model_core.net import checkpoint, weight_sets
from scl_deeplab.model_core.net import model as model_lib
from scl_deeplab.model_core.net.device import pick_device, pick_precision
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.model_core.progress import SILENT, PrintProgress
from scl_deeplab.model_core.training import recipe
from scl_deeplab.model_core.training.dataset import crops_per_patch, load_manifests, view_px
from scl_deeplab.model_core.training.train import TrainConfig, train

log = logging.getLogger("scl_deeplab.bench")
OVERHEAD = 1.3  # an epoch's time over its training steps alone: data, BatchNorm re-estimation, validation


class Deadline(PrintProgress):
    """Command-line progress that asks training to stop once ``seconds`` have passed."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.end = time.monotonic() + seconds

    def is_canceled(self) -> bool:
        return time.monotonic() > self.end


def seconds_per_step(config: TrainConfig, patch_px: int) -> float:
    """The measured time of one full-network training step (the fastest of three after one to warm up) on random
    ``patch_px`` squares, on the device and in the precision training picks."""
    device = pick_device(config.device)
    dtype = pick_precision(device, config.precision).autocast_dtype
    net = model_lib.build_model()
    model_lib.freeze_for(net, "full")
    model_lib.train_mode(net)
    net = net.to(device=device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    x = torch.rand(config.batch_size, 3, patch_px, patch_px, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, scl.NUM_CLASSES, (config.batch_size, patch_px, patch_px), device=device)
    times = []
    for _ in range(4):  # the first steps also create kernels and allocate: they took twice a later step
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model_lib.forward(net, x)["out"]
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def epochs_for(minutes: float, steps_per_epoch: int, step_s: float) -> int:
    """How many epochs fit in ``minutes`` (nearest; the deadline stops a last one that overruns), at least one."""
    return max(1, round(minutes * 60 / (steps_per_epoch * step_s * OVERHEAD)))


def confusion(prediction: Path, reference: Path, unknown_codes_as_no_data: bool) -> np.ndarray:
    """Evaluate's confusion matrix; with ``unknown_codes_as_no_data`` reference codes above 11 (lossy files)
    are left out instead of refused, as Make patches left them out of training."""
    if not unknown_codes_as_no_data:
        return evaluate_scene(prediction, reference).scores.matrix
    with rasterio.open(prediction) as pred, onto_grid(reference, pred, what="reference SCL") as ref:
        return confusion_from_codes(ref.read(1), pred.read(1))


def score_row(name: str, sc: Scores) -> dict[str, Any]:
    return {"name": name, "pixel_accuracy": sc.pixel_accuracy, "miou": sc.mean_iou, "kappa": sc.kappa,
            "iou": [None if np.isnan(v) else round(float(v), 4) for v in sc.iou]}


def table(rows: list[dict[str, Any]]) -> str:
    """One line per method: pixel accuracy, mIoU, kappa, then IoU per SCL code."""
    codes = [c.code for c in scl.LEARNED]
    head = f"{'method':<26}{'pix.acc':>8}{'mIoU':>7}{'kappa':>7} " + "".join(f"{c:>6}" for c in codes)
    lines = [head, "-" * len(head)]
    for r in rows:
        ious = "".join(f"{'-' if v is None else f'{v:.2f}':>6}" for v in r["iou"])
        lines.append(f"{r['name']:<26}{r['pixel_accuracy']:>8.3f}{r['miou']:>7.3f}{r['kappa']:>7.3f} {ious}")
    return "\n".join(lines)


def run(train_scenes: list[Scene], val_scenes: list[Scene], minutes: float, work: Path,
        patch_config: PatchConfig, config: TrainConfig, predict_config: PredictConfig,
        epochs: int | None = None) -> dict[str, Any]:
    """Patches, training, prediction and scores; returns the results (``epochs``: fixed instead of planned)."""
    started = time.perf_counter()
    scenes = [SceneFiles(image, mask) for image, mask in train_scenes]
    indexes = [make_patches(scenes, work / "patches", replace(patch_config, overwrite=True)).index]
    manifest = load_manifests(indexes)
    patches_s = time.perf_counter() - started
    lookup = fit_lookup([(r.image, r.mask) for r in manifest.train], manifest.input_scale)

    # What each step sees: whole patches, or the crops the recipe training will follow (or --crop) gives.
    start = "none" if weight_sets.best_on_disk() is None else "pretrained"
    view = view_px(manifest.patch_size, recipe.for_start(config, start, resuming=False, progress=SILENT).crop_px)
    step_s = seconds_per_step(config, view)
    steps = max(1, len(manifest.train) * crops_per_patch(manifest.patch_size, view) // config.batch_size)
    epoch_min = steps * step_s * OVERHEAD / 60
    if epoch_min > 1.5 * minutes:
        raise SystemExit(f"One epoch of {len(manifest.train)} patches takes about {epoch_min:.0f} minutes here, far "
                         f"over MINUTES={minutes:g}: give more time, or fewer or smaller training scenes.")
    config = replace(config, epochs=epochs or epochs_for(minutes, steps, step_s))
    log.info("%d training and %d validation patches of %d px, %d px a sample; %d steps an epoch of %.2f s -> %d "
             "epochs in %g minutes", len(manifest.train), len(manifest.val), manifest.patch_size, view, steps, step_s,
             config.epochs, minutes)
    output = work / "model.pt"
    started = time.perf_counter()
    try:
        result = train(indexes, config, output, progress=Deadline(minutes * 60))
        epochs_done, best_epoch = len(result.history), result.best_epoch
    except Canceled as exc:
        log.info("Stopped at the time bound: %s", exc)
        epochs_done, best_epoch = -1, -1
        if not output.exists():
            raise SystemExit("No epoch finished within MINUTES; give it more time or smaller patches.") from exc
    train_s = time.perf_counter() - started
    trained = checkpoint.load_checkpoint(output)["meta"]
    stage = trained["stages"][-1]["stage"]  # what ran: the from-scratch recipe may have changed it

    n = scl.NUM_CLASSES
    model_m, as_trained_m, majority_m, lookup_m = (np.zeros((n, n), np.int64) for _ in range(4))
    # Also at tiles of the size the network saw while it learnt (its patches, or its crops).
    seen = int(trained["patch_size"])
    as_trained = replace(predict_config, tiling=TilingConfig(seen, seen // 4))
    started = time.perf_counter()
    for i, (image, scl_path) in enumerate(val_scenes):
        prediction = work / f"prediction_{i}.tif"
        predict_scene_from_checkpoint(image, output, prediction, predict_config)
        model_m += confusion(prediction, scl_path, patch_config.unknown_codes_as_no_data)
        if as_trained.tiling != predict_config.tiling:
            predict_scene_from_checkpoint(image, output, work / f"prediction_{i}_as_trained.tif", as_trained)
            as_trained_m += confusion(work / f"prediction_{i}_as_trained.tif", scl_path,
                                      patch_config.unknown_codes_as_no_data)
        by_majority, by_lookup = baseline_confusions(image, scl_path, lookup)
        majority_m += by_majority
        lookup_m += by_lookup
    predict_s = time.perf_counter() - started
    model_s, majority_s, lookup_s = scores(model_m), scores(majority_m), scores(lookup_m)
    rows = [score_row(f"model, tiles {predict_config.tiling.tile_size_px} px", model_s)]
    if as_trained_m.any():
        rows.append(score_row(f"model, tiles {seen} px", scores(as_trained_m)))
    rows += [score_row("colour lookup (32^3)", lookup_s), score_row("majority class", majority_s)]
    return {
        "rows": rows,
        "model_pixel_accuracy": model_s.pixel_accuracy, "model_miou": model_s.mean_iou, "kappa": model_s.kappa,
        "iou": {str(c.code): r for c, r in zip(scl.LEARNED, rows[0]["iou"])},
        "majority_pixel_accuracy": majority_s.pixel_accuracy, "majority_miou": majority_s.mean_iou,
        "lookup_pixel_accuracy": lookup_s.pixel_accuracy, "lookup_miou": lookup_s.mean_iou,
        "lookup_kappa": lookup_s.kappa,
        "model_at_patch_size_tiles": {"pixel_accuracy": rows[1]["pixel_accuracy"], "miou": rows[1]["miou"]}
        if as_trained_m.any() else None,
        "train_s": round(train_s, 1), "patches_s": round(patches_s, 1), "predict_s": round(predict_s, 1),
        "step_s": round(step_s, 2), "epochs_planned": config.epochs, "epochs_done": epochs_done,
        "best_epoch": best_epoch, "minutes": minutes,
        "train_patches": len(manifest.train), "val_patches": len(manifest.val),
        "train_scenes": [str(s[0]) for s in train_scenes], "val_scenes": [str(s[0]) for s in val_scenes],
        "evaluated_pixels": int(model_m.sum()), "tile_size_px": predict_config.tiling.tile_size_px,
        "patch_config": {k: v for k, v in asdict(patch_config).items() if k in ("patch_size_px", "stride_px", "bands")},
        "train_config": {**{k: v for k, v in asdict(config).items() if k != "weights_file"}, "stage": stage},
        "weights": trained["weights_source"]["kind"],
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="scene list of training scenes")
    parser.add_argument("--val", type=Path, help="scene list of evaluation scenes")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time bound (default 20)")
    parser.add_argument("--work", type=Path, help="folder for patches, model and predictions (default: temporary)")
    parser.add_argument("--patch-size", type=int, help="PATCH_SIZE (default: Make patches' default)")
    parser.add_argument("--stride", type=int, help="STRIDE (default: Make patches' default)")
    parser.add_argument("--split", choices=("blocks", "scenes"), help="SPLIT (default: Make patches' default)")
    parser.add_argument("--batch-size", type=int, help="BATCH_SIZE (default: Train head's default)")
    parser.add_argument("--crop", type=int, help="CROP: train on random crops of this size (default: Train head's "
                        "default, 0: whole patches, or 128 px crops under the from-scratch recipe)")
    parser.add_argument("--epochs", type=int, help="train this many epochs instead of planning them from MINUTES "
                        "(MINUTES still stops the run): runs on a shared, busy CPU then stay comparable")
    parser.add_argument("--learning-rate", type=float, help="LEARNING_RATE (default: Train head's default)")
    parser.add_argument("--class-weights", action="store_true", help="CLASS_WEIGHTS")
    parser.add_argument("--bands", help="BANDS: the scenes' band numbers the model reads, e.g. 1,2,3 (default 1,2,3)")
    parser.add_argument("--no-pixel-head", dest="pixel_head", action="store_false",
                        help="train the plain network, without PIXEL_HEAD")
    parser.add_argument("--unknown-codes-as-no-data", action="store_true",
                        help="UNKNOWN_CODES_AS_NO_DATA: SCL codes above 11 (lossy files) count as no data")
    args = parser.parse_args(argv)
    if bool(args.train) != bool(args.val):
        parser.error("give both TRAIN and VAL scene lists, or neither (sample scenes)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.manual_seed(0)
    patch_config = PatchConfig(preview_patches=0)
    if args.patch_size:
        patch_config = replace(patch_config, patch_size_px=args.patch_size)
    if args.stride:
        patch_config = replace(patch_config, stride_px=args.stride)
    if args.split:
        patch_config = replace(patch_config, split=args.split)
    if args.bands:
        patch_config = replace(patch_config, bands=parse_bands(args.bands))
    if args.unknown_codes_as_no_data:
        patch_config = replace(patch_config, unknown_codes_as_no_data=True)
    config = TrainConfig(stage="head", learning_rate=1e-3, pixel_head=args.pixel_head)  # Train head's defaults
    for field_name, value in (("batch_size", args.batch_size), ("learning_rate", args.learning_rate),
                              ("class_weights", args.class_weights or None), ("crop_px", args.crop)):
        if value:
            config = replace(config, **{field_name: value})
    with tempfile.TemporaryDirectory(prefix="scl-accuracy-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.train:
            train_scenes, val_scenes = read_scene_list(args.train), read_scene_list(args.val)
        else:
            train_scenes, val_scenes = sample_scenes(work, "train"), sample_scenes(work, "val")
        results = run(train_scenes, val_scenes, args.minutes, work, patch_config, config, PredictConfig(),
                      epochs=args.epochs)
    sys.stdout.write(table(results.pop("rows")) + "\n")
    sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
