"""Training DeepLabv3 on a patches manifest, one stage at a time.

A stage is a freeze policy (``model.freeze_for``): "head" trains the classifier
on a frozen backbone, "layer4" also the last ResNet stage, "full" everything.
Each epoch ends with a validation pass and two atomic checkpoint writes: the
latest epoch (``checkpoint.last_path(output)``) and, when validation mIoU
improved, the best one (``output``). Resuming from a checkpoint continues its
history: epoch numbers go on across stages.

Under ``torchrun`` the same call trains on every rank (``distributed.py``):
BATCH_SIZE patches per process, gradients averaged, BatchNorm statistics and
validation metrics over all ranks, and only rank 0 writing checkpoints and
logs. Checkpoints hold no trace of the process count, so a run can resume with
more or fewer processes.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import scl
from ..atomic import remove_stale_parts
from ..data import bands
from ..data.radiometry import input_scale
from ..errors import Canceled, CheckpointError, InputError, TrainingError
from ..evaluation import metrics
from ..net import aspp, checkpoint, input_conv, pixel_head, weight_sets
from ..net import model as model_lib
from ..net.device import Precision, describe, pick_device, pick_precision
from ..net.weights import WeightsSource, load_weights
from ..net.weights import resolve as resolve_weights
from ..progress import SILENT, Progress, SubProgress
from . import distributed, recipe
from .config import TrainConfig, TrainResult
from .dataset import Manifest, band_statistics, check_patches, crops_per_patch, load_manifests, view_px
from .loop import Loop, device_errors


# Learning rates that suit each stage with AdamW: the head from scratch, pretrained layers gently.
def _check_config(config: TrainConfig, resume: Path | None) -> None:
    if config.stage not in model_lib.STAGES:
        raise InputError(f'Unknown stage "{config.stage}"; use one of {", ".join(model_lib.STAGES)}.')
    if config.epochs < 1:
        raise InputError("EPOCHS must be at least 1.")
    if config.batch_size < 2:
        raise InputError("BATCH_SIZE must be at least 2: DeepLab's ASPP BatchNorm needs two patches per batch.")
    if not config.learning_rate > 0:
        raise InputError("LEARNING_RATE must be above 0.")
    if resume is not None and config.weights_file:
        raise InputError("Give either a checkpoint to resume from or WEIGHTS_FILE, not both.")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so runs with one seed repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _start(
    config: TrainConfig,
    resume: Path | None,
    start: tuple[str, Path | None],
    build: Callable[..., nn.Module],
    names: tuple[str, ...] = bands.RGB,
) -> tuple[nn.Module, dict[str, Any], WeightsSource | None]:
    """The model (reading the bands ``names``) with its starting weights, and the metadata carried over from
    ``resume``."""
    if resume is None:
        net = build(aux=config.aux)
        input_conv.set_input_bands(net, len(names))
        if config.pixel_head and isinstance(net, model_lib.SclDeepLab):  # test stand-ins stay as they are
            pixel_head.attach(net, len(names), scl.NUM_CLASSES)
        return net, {}, load_weights(net, *start, rgb=bands.rgb_positions(names))
    payload = checkpoint.load_checkpoint(resume)
    state, meta = payload["state_dict"], payload["meta"]
    recorded = checkpoint.input_from_meta(meta, str(resume))  # refuse a checkpoint that does not record its input
    bands.check_same(recorded.band_order, names, "The patches", f"{resume} was trained on {recorded.describe()}; "
                     "make patches with those bands, in that order, to continue training it.")
    net = build(aux=config.aux or any(k.startswith("aux_classifier.") for k in state))
    input_conv.set_input_bands(net, len(names))
    if pixel_head.in_state(state) is not None:
        pixel_head.attach(net, len(names), scl.NUM_CLASSES)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("aux_classifier.")]:
        raise CheckpointError(f"The weights in {resume} do not fit the model: {(unexpected or missing)[:3]}. Retrain.")
    return net, meta, None


class _Keeper:
    """Writes the latest and the best checkpoint after each epoch, and says what is kept when a run stops."""

    def __init__(self, output: Path, *, write: bool = True) -> None:
        self.output, self.last, self.write = output, checkpoint.last_path(output), write
        self.best: dict[str, Any] | None = None
        self._best_state: dict[str, torch.Tensor] = {}
        if write:  # temporary files of a killed run
            remove_stale_parts(self.output)
            remove_stale_parts(self.last)

    def keep_earlier_best(self, previous: dict[str, Any]) -> bool:
        """Make the resumed history's best the one to beat when ``output`` already holds its weights.

        That is resuming into the same output (``--resume m.last.pt --output m.pt``):
        an epoch of this run replaces those weights only when it scores higher.
        """
        best = previous.get("best")
        if not isinstance(best, dict) or not self.output.is_file():
            return False
        try:
            payload = checkpoint.load_checkpoint(self.output)
        except CheckpointError:
            return False
        if payload["meta"].get("best") != best or payload["meta"].get("epoch") != best.get("epoch"):
            return False  # another run's file: this run's epochs compete among themselves
        self.best, self._best_state = dict(best), payload["state_dict"]
        return True

    def epoch_done(self, net: nn.Module, meta: dict[str, Any], row: dict[str, Any]) -> bool:
        """Save the epoch of ``row``; returns whether it is the best so far (by validation mIoU)."""
        improved = self.best is None or row["mean_iou"] > self.best["mean_iou"]
        if improved:
            self.best = {"epoch": row["epoch"], "mean_iou": row["mean_iou"], "pixel_accuracy": row["pixel_accuracy"]}
        if not self.write:  # rank 0 writes
            return improved
        if improved:
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        checkpoint.save_checkpoint(self.last, net.state_dict(), {**meta, "epoch": row["epoch"], "best": self.best})
        if improved:
            checkpoint.save_checkpoint(self.output, self._best_state, self.best_meta(meta))
        return improved

    def best_meta(self, meta: dict[str, Any]) -> dict[str, Any]:
        """``meta`` for the best weights."""
        assert self.best is not None
        return {**meta, "epoch": self.best["epoch"], "best": self.best}

    def finish(self, meta: dict[str, Any]) -> None:
        """Rewrite the best weights with the complete history, so resuming continues after the last epoch."""
        if self.write and self.best is not None and self.best["epoch"] != meta["history"][-1]["epoch"]:
            checkpoint.save_checkpoint(self.output, self._best_state, self.best_meta(meta))

    def kept(self, what: str) -> str:
        """``what`` happened, and which checkpoints stay valid."""
        if self.best is None:
            return f"{what}, before the first epoch completed: no checkpoint was written."
        return (
            f"{what}. The checkpoints of complete epochs stay valid: best (epoch {self.best['epoch']}, "
            f"mIoU {self.best['mean_iou']:.3f}) at {self.output}, latest at {self.last}."
        )


def train(
    patches: Path | str | Sequence[Path | str],
    config: TrainConfig,
    output: Path | str,
    *,
    resume: Path | str | None = None,
    progress: Progress = SILENT,
    build: Callable[..., nn.Module] = model_lib.build_model,
) -> TrainResult:
    """Train on the manifest(s) ``patches`` and write checkpoints to ``output`` (best) and its ``.last`` sibling.

    Args:
        patches: the patches manifest (index.json) or its folder, or several, trained as one
            (``dataset.merge_manifests``).
        config: stage, epochs, batch size, learning rate, weights, device, seed.
        output: the best checkpoint's path; the latest epoch goes to ``checkpoint.last_path(output)``.
        resume: a checkpoint to continue from (its weights, normalisation and history).
        progress: progress, cancel and per-epoch log lines.
        build: makes the network given ``aux``; tests pass a small stand-in.

    Raises:
        ManifestError, MaskCodeError: unusable patches, or manifests that disagree. CheckpointError: a bad ``resume``.
        WeightsNotFoundError: pretrained weights not on disk. DeviceError: no such
        device, or out of memory. TrainingError: the loss became NaN. Canceled: the
        user stopped; checkpoints of complete epochs stay valid.
    """
    output = Path(output)
    resume = Path(resume) if resume else None
    ranks = distributed.Ranks.from_env()
    if not ranks.is_main:
        progress = SILENT  # rank 0 reports for all
    _check_config(config, resume)
    manifest = load_manifests(patches)
    counts = check_patches(manifest, progress=SubProgress(progress, 0, 2))
    if len(manifest.train) < 2:
        raise InputError("Training needs at least 2 training patches (DeepLab's BatchNorm needs batches of 2).")
    distributed.check_shares(len(manifest.train), ranks)
    # Weights not on disk fail now, not after building the model.
    start = ("none", None) if resume else resolve_weights(
        config.pretrained, config.weights_file, progress=progress, bands=len(manifest.bands)
    )
    config = recipe.for_start(config, start[0], resuming=resume is not None, progress=progress)
    device = distributed.device_for(pick_device(config.device), ranks)
    precision = pick_precision(device, config.precision)
    progress.info(describe(device, precision) + (f" {ranks.world_size} processes." if ranks.distributed else ""))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # patches all have one size: pick the fastest kernels once
    with distributed.process_group(device, ranks):
        return _train(manifest, counts, config, output, resume, start, device, precision, ranks, progress, build)


def _train(
    manifest: Manifest,
    counts: dict[str, np.ndarray],
    config: TrainConfig,
    output: Path,
    resume: Path | None,
    start: tuple[str, Path | None],
    device: torch.device,
    precision: Precision,
    ranks: distributed.Ranks,
    progress: Progress,
    build: Callable[..., nn.Module],
) -> TrainResult:
    """The epochs of ``train``, once the data is checked and the device (and process group) are ready."""
    seed_everything(config.seed)
    names = manifest.input_names
    net, previous, source = _start(config, resume, start, build, names)
    if previous and not config.crop_px:  # a run from a checkpoint goes on seeing what its model saw
        config = replace(config, crop_px=int((previous.get("config") or {}).get("crop_px") or 0))
    view = view_px(manifest.patch_size, config.crop_px)
    if view < manifest.patch_size:
        progress.info(
            f"Training on random {view} px crops of the {manifest.patch_size} px patches, "
            f"{crops_per_patch(manifest.patch_size, view)} a patch each epoch; validating on a grid of such crops. "
            f"The model records {view} px as its training patch size (ASPP rates and predict's default tiles "
            "follow it)."
        )
    rates = aspp.rates_for(config.aspp_rates, view, aspp.read_rates(previous) if previous else None)
    if model_lib.set_aspp_rates(net, rates) and (note := aspp.small_patch_note(view, rates)):
        (progress.info if rates != aspp.STANDARD_RATES else progress.warn)(note)
    if resume is not None:
        progress.info(f"Continuing from {resume} (epoch {previous.get('epoch')}), stage {config.stage}.")
    elif source is not None and source.kind != "none":
        progress.info(f"Starting weights: {source.kind} from {source.file}.")
    if source is not None and source.kind == "none" and config.stage != "full":
        progress.warn(
            f'Training the "{config.stage}" stage on a randomly initialised backbone learns little: frozen random '
            "features carry little information. Use pretrained weights (PRETRAINED coco or imagenet, or "
            'WEIGHTS_FILE), or train the "full" stage.'
        )
    if previous:
        recorded = checkpoint.input_from_meta(previous, str(resume))
        mean, std = recorded.mean, recorded.std
    elif bands.is_true_colour(names):
        mean, std = source.mean, source.std  # type: ignore[union-attr]
    else:
        mean, std = _multispectral_normalisation(manifest, source, progress)
    model_lib.freeze_for(net, config.stage)  # type: ignore[arg-type]
    net.to(device=device, memory_format=torch.channels_last)
    meta = _base_meta(manifest, config, net, mean, std, previous, source)
    loop = Loop(net, manifest, config, device, precision.autocast_dtype, counts["train"], mean, std, ranks)
    first = meta["history"][-1]["epoch"] + 1 if meta["history"] else 1
    meta["stages"].append(_stage_record(config, manifest, first, resume, describe(device, precision), ranks))
    keeper = _Keeper(output, write=ranks.is_main)
    if resume is not None and keeper.keep_earlier_best(previous):
        progress.info(
            f"{output} holds the best epoch so far ({keeper.best['epoch']}, mIoU {keeper.best['mean_iou']:.3f}); "
            "it is replaced only by a better one."
        )
    for i in range(config.epochs):
        epoch = first + i
        started, learning_rate = time.perf_counter(), loop.learning_rate
        try:
            with device_errors(config.batch_size):
                train_loss = loop.train_epoch(epoch, SubProgress(progress, *_span(i, config.epochs)))
                loop.reestimate_batchnorm(epoch)  # validation and the checkpoints get statistics of these weights
                val_loss, sc = loop.validate()
        except Canceled as exc:
            raise Canceled(keeper.kept(f"Canceled during epoch {epoch}")) from exc
        except TrainingError as exc:
            raise TrainingError(keeper.kept(f"{exc} (epoch {epoch})")) from exc
        row = _history_row(epoch, config.stage, train_loss, val_loss, sc, learning_rate, time.perf_counter() - started)
        meta["history"].append(row)
        meta["stages"][-1]["last_epoch"] = epoch
        improved = keeper.epoch_done(net, meta, row)
        progress.info(_epoch_line(row, i + 1, config.epochs, improved))
    keeper.finish(meta)
    distributed.barrier()  # every rank returns once rank 0's checkpoints are complete
    progress.set_progress(100)
    best = keeper.best
    assert best is not None
    return TrainResult(
        output, keeper.last, best["epoch"], best["pixel_accuracy"], best["mean_iou"], meta["history"],
        keeper.best_meta(meta),
    )


def _span(i: int, epochs: int) -> tuple[float, float]:
    """Epoch ``i``'s share of the progress bar (the first 2 % went to checking the patches)."""
    return 2 + 98 * i / epochs, 2 + 98 * (i + 1) / epochs


def _base_meta(
    manifest: Manifest,
    config: TrainConfig,
    net: nn.Module,
    mean: Any,
    std: Any,
    previous: dict[str, Any],
    source: WeightsSource | None,
) -> dict[str, Any]:
    return {
        **checkpoint.input_to_meta(
            checkpoint.ModelInput(manifest.input_names, manifest.dtype, float(manifest.input_scale),
                                  tuple(float(v) for v in mean), tuple(float(v) for v in std))
        ),
        "patch_size": view_px(manifest.patch_size, config.crop_px),  # what the model saw: predict tiles by it
        "aux": model_lib.has_aux(net),
        "aspp_rates": model_lib.aspp_rates(net),
        "pixel_head": pixel_head.of(net) is not None,
        "stages": list(previous.get("stages", [])),
        "history": list(previous.get("history", [])),
        "weights_source": previous.get("weights_source") if previous else source.to_meta(),  # type: ignore[union-attr]
        "config": asdict(config),
    }


def _multispectral_normalisation(
    manifest: Manifest, source: WeightsSource | None, progress: Progress
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std for multispectral patches: the training patches' own, or those of a
    multispectral weight set of exactly these bands (its statistics are on true-colour units, x / 2500)."""
    n = len(manifest.bands)
    if source is not None and source.kind == "checkpoint" and len(source.mean) == n:
        return source.mean, source.std
    chosen = next((w for w in weight_sets.WEIGHT_SETS if w.name == getattr(source, "kind", None)), None)
    if chosen is not None and chosen.bands == n != 3:
        factor = input_scale(manifest.dtype) / manifest.input_scale  # one value for all bands in such sets
        return (chosen.mean[0] * factor,) * n, (chosen.std[0] * factor,) * n
    mean, std = band_statistics(manifest.train, manifest.input_scale)
    progress.info(
        f"Bands {', '.join(manifest.input_names)} (values / {manifest.input_scale:g}) normalised by the training "
        "patches' mean and std: " + ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(mean, std)) + "."
    )
    return mean, std


def _stage_record(
    config: TrainConfig, manifest: Manifest, first: int, resume: Path | None, device: str, ranks: distributed.Ranks
) -> dict[str, Any]:
    return {
        "stage": config.stage,
        "first_epoch": first,
        "last_epoch": first - 1,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "crop_px": config.crop_px,
        "class_weights": config.class_weights,
        "seed": config.seed,
        "patches": str(manifest.path),
        "manifests": [str(p) for p in manifest.sources or (manifest.path,)],
        "resumed_from": str(resume) if resume else None,
        "device": device,
        "processes": ranks.world_size,
    }


def _history_row(
    epoch: int, stage: str, train_loss: float, val_loss: float, sc: metrics.Scores, lr: float, seconds: float
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "stage": stage,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "pixel_accuracy": sc.pixel_accuracy,
        "mean_iou": sc.mean_iou,
        "kappa": None if math.isnan(sc.kappa) else sc.kappa,
        "iou": [None if math.isnan(v) else float(v) for v in sc.iou],
        "learning_rate": lr,
        "seconds": seconds,
    }


def _epoch_line(row: dict[str, Any], done: int, total: int, improved: bool) -> str:
    return (
        f"Epoch {row['epoch']} ({row['stage']}, {done}/{total}): train loss {row['train_loss']:.4f}, "
        f"val loss {row['val_loss']:.4f}, pixel accuracy {row['pixel_accuracy']:.3f}, "
        f"mIoU {row['mean_iou']:.3f}, {row['seconds']:.1f} s" + (" - best so far, saved" if improved else "")
    )
