"""Training data: the patches manifest, checked, and a torch Dataset over its patches.

The manifest (``index.json``, written by Make patches, read by ``data.manifest``) lists
image and mask GeoTIFFs of one size with a train/val split. The model sees true colour in 0-1,
normalised with the mean and std its weights expect; masks become class indices
(SCL code - 1, code 0 -> ``scl.IGNORE_INDEX``). Training patches are flipped and
rotated by multiples of 90 degrees at random, and their brightness, contrast
and haze jittered (``radiometric_jitter``); validation patches never are.
Several manifests (several scenes or areas) train as one when their patch size,
bands and scaling agree (``load_manifests``).
Under torchrun each process loads its own share (``distributed.ShardSampler``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import scl
from ..data.manifest import Manifest, PatchRecord
from ..data.radiometry import to_unit
from ..data.rasters import check_readable, open_raster
from ..errors import ManifestError, MaskCodeError
from ..progress import SILENT, Progress, check_canceled
from .distributed import Ranks, ShardSampler


def _names(records: Sequence[Any], n: int = 3) -> str:
    shown = ", ".join(str(r) for r in records[:n])
    return shown + (f" and {len(records) - n} more" if len(records) > n else "")


def load_manifest(path: Path | str) -> Manifest:
    """Read a patches manifest (``index.json`` or the folder holding it) and check it is fit to train on.

    Raises:
        ManifestError: missing or not a manifest, no patches, no train or no
            validation patches, patch files missing, or patches of mixed sizes.
    """
    manifest = Manifest.load(path)
    path = manifest.path
    if not manifest.patches:
        raise ManifestError(
            f"The manifest {path} lists no patches. Run Make patches on a larger area or with a lower minimum "
            "valid fraction."
        )
    missing = [f.relative_to(path.parent) for r in manifest.patches for f in (r.image, r.mask) if not f.is_file()]
    if missing:
        raise ManifestError(
            f"{len(missing)} patch files listed in {path} are missing: {_names(missing)}. Run Make patches again."
        )
    if not manifest.train:
        raise ManifestError(
            f"The manifest {path} has no training patches. Run Make patches with a lower validation fraction."
        )
    if not manifest.val:
        raise ManifestError(
            f"The manifest {path} has no validation patches, so training could not measure or choose the best epoch. "
            "Run Make patches with a validation fraction above 0 on an area with more patches."
        )
    return manifest


def load_manifests(paths: Sequence[Path | str] | Path | str) -> Manifest:
    """Read one manifest, or several merged into one (``Manifest.merge``), each checked as ``load_manifest`` does.

    Raises:
        ManifestError: as ``load_manifest`` for any of them, no manifest given, the same one given twice, or
            manifests that disagree on patch size, band order or input scaling.
    """
    if isinstance(paths, (str, Path)):
        return load_manifest(paths)
    manifests = [load_manifest(p) for p in paths]
    resolved = [m.path.resolve() for m in manifests]
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if twice:
        raise ManifestError(f"The manifest {twice[0]} is given more than once; list each patches manifest once.")
    return manifests[0] if len(manifests) == 1 else Manifest.merge(manifests)


def check_patches(manifest: Manifest, *, progress: Progress = SILENT) -> dict[str, np.ndarray]:
    """Open every patch once: sizes, band count and SCL codes; returns pixel counts by code per split.

    Raises:
        ManifestError: a patch is not ``patch_size`` square, or an image has fewer than 3 bands.
        MaskCodeError: a mask holds values outside SCL codes 0-11.
    """
    counts = {"train": np.zeros(scl.MAX_CODE + 1, np.int64), "val": np.zeros(scl.MAX_CODE + 1, np.int64)}
    records = manifest.train + manifest.val
    size = manifest.patch_size
    for done, record in enumerate(records):
        if done % 16 == 0:
            check_canceled(progress)
        with open_raster(record.image) as img, open_raster(record.mask) as msk:
            check_readable(img)
            wanted = len(manifest.bands)
            if img.count != wanted:
                raise ManifestError(
                    f"Patch image {record.image} has {img.count} band(s); the manifest's patches have {wanted} "
                    f"({', '.join(manifest.input_names)}). Run Make patches again."
                )
            shapes = {(img.width, img.height), (msk.width, msk.height)}
            if shapes != {(size, size)}:
                raise ManifestError(
                    f"Patch {record.id} is {img.width}x{img.height} (mask {msk.width}x{msk.height}) but the manifest's "
                    f"patch_size is {size}: patches of mixed sizes. Make all patches with one PATCH_SIZE."
                )
            codes = msk.read(1)
        bad = scl.unknown_codes(codes)
        if bad:
            raise MaskCodeError(
                f"Mask {record.mask} holds codes {', '.join(map(str, bad))}, which are not SCL codes 0-{scl.MAX_CODE}. "
                "Check that the mask is a Sentinel-2 SCL raster."
            )
        counts[record.split] += np.bincount(codes.ravel(), minlength=scl.MAX_CODE + 1)[: scl.MAX_CODE + 1]
        progress.set_progress(100.0 * (done + 1) / len(records))
    for split, hist in counts.items():
        if hist[1:].sum() == 0:
            which = "training" if split == "train" else "validation"
            raise ManifestError(
                f"The {which} patches of {manifest.path} hold only no-data pixels (SCL code 0): nothing to learn "
                "or measure. Run Make patches with a higher minimum valid fraction."
            )
    return counts


def class_weights(histogram: np.ndarray, *, max_weight: float = 10.0) -> torch.Tensor:
    """Cross-entropy weights per class index from training pixel counts by SCL code.

    Median-frequency balancing: a class gets median(frequency) / its frequency,
    clipped to [1/max_weight, max_weight] so a handful of saturated pixels cannot
    dominate the loss. Classes absent from training get weight 1.
    """
    counts = np.asarray(histogram, dtype=np.float64)[1 : scl.NUM_CLASSES + 1]
    weights = np.ones(scl.NUM_CLASSES)
    present = counts > 0
    if present.any():
        freq = counts[present] / counts[present].sum()
        weights[present] = np.clip(np.median(freq) / freq, 1.0 / max_weight, max_weight)
    return torch.tensor(weights, dtype=torch.float32)


def view_px(patch_size: int, crop: int) -> int:
    """The side (px) of what the model sees in training: ``crop`` when it is set and below ``patch_size``."""
    return crop if 0 < crop < patch_size else patch_size


def crops_per_patch(patch_size: int, crop: int) -> int:
    """How many ``crop`` px squares a patch gives an epoch: as many as cover it (1 for whole patches)."""
    view = view_px(patch_size, crop)
    return (-(-patch_size // view)) ** 2


def radiometric_jitter(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``unit`` (3, H, W, true colour in 0-1) with random brightness, contrast and a little haze.

    Scenes differ in sun height, season and atmosphere, so one colour does not
    always mean one class; the jitter keeps the model from keying on absolute
    brightness alone. Bounds stay small: bright white is what cloud looks like,
    and a thin veil is what cirrus looks like.
    """
    gain, contrast = rng.uniform(0.9, 1.1), rng.uniform(0.85, 1.15)
    haze = rng.uniform(0.0, 0.04) if rng.random() < 0.3 else 0.0
    centre = unit.mean(axis=(1, 2), keepdims=True)
    out = ((unit - centre) * contrast + centre) * gain
    out = out + haze * (1.0 - out)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def band_statistics(records: Sequence[PatchRecord], scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std of the patches' valid pixels in 0-1 (raw / ``scale``), for multispectral input.

    Pixels whose bands are all 0 (no data) are left out; a band without spread gets std 1.
    """
    total = total_sq = None
    count = 0
    for record in records:
        with open_raster(record.image) as img:
            raw = img.read()
        unit = to_unit(raw, scale).reshape(raw.shape[0], -1).astype(np.float64)
        unit = unit[:, (raw.reshape(raw.shape[0], -1) != 0).any(axis=0)]
        total = unit.sum(axis=1) if total is None else total + unit.sum(axis=1)
        total_sq = (unit**2).sum(axis=1) if total_sq is None else total_sq + (unit**2).sum(axis=1)
        count += unit.shape[1]
    if not count:
        raise ManifestError(
            "The training patches hold no valid pixels to measure the bands on. Run Make patches again."
        )
    mean = total / count  # type: ignore[operator]
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))  # type: ignore[operator]
    std = np.where(std > 1e-6, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class PatchDataset(Dataset):
    """Image patches as normalised (bands, H, W) float32 tensors, masks as (H, W) int64 class indices."""

    def __init__(
        self,
        records: Sequence[PatchRecord],
        *,
        scale: float,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        radiometric: bool = False,
        crop: int = 0,
        patch_size: int = 0,
    ) -> None:
        """``augment``: random flips and quarter turns; ``radiometric``: also ``radiometric_jitter``.

        ``crop`` below ``patch_size``: items are ``crop`` px squares, as many a patch as cover it
        (``crops_per_patch``), so an epoch still covers about every pixel once, in that many more, smaller
        steps. Augmented (training) items are random squares holding labelled pixels; others a fixed grid over
        each patch, so validation sees what a prediction with tiles of ``crop`` px sees.
        """
        self.records = list(records)
        self.crop = crop if view_px(patch_size, crop) < patch_size else 0
        self.per_patch = crops_per_patch(patch_size, self.crop) if self.crop else 1
        self.scale = scale
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        self.augment = augment
        self.radiometric = radiometric

    def __len__(self) -> int:
        return len(self.records) * self.per_patch

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch ``item``: an index, or (index, augmentation seed) as ``distributed.ShardSampler`` gives."""
        i, augmentation_seed = item if isinstance(item, tuple) else (item, item)
        record = self.records[i // self.per_patch]
        # Seeded per patch and epoch by the sampler: the same whatever the number of processes or workers.
        rng = np.random.default_rng(augmentation_seed)
        with open_raster(record.image) as img, open_raster(record.mask) as msk:
            codes = msk.read(1)
            window = None
            if self.crop:
                (row, col), codes = (_labelled_crop(codes, self.crop, rng) if self.augment
                                     else _grid_crop(codes, self.crop, i % self.per_patch))
                window = ((row, row + self.crop), (col, col + self.crop))
            raw = img.read(tuple(range(1, len(self.mean) + 1)), window=window)
        unit = to_unit(raw, self.scale)
        target = scl.code_to_index(codes)
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            unit, target = np.rot90(unit, k, axes=(1, 2)), np.rot90(target, k)
            if flip:
                unit, target = unit[:, :, ::-1], target[:, ::-1]
        if self.radiometric:
            unit = radiometric_jitter(np.ascontiguousarray(unit), rng)
        image = (unit - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(target))


def _labelled_crop(codes: np.ndarray, size: int, rng: np.random.Generator, tries: int = 8) -> tuple[
        tuple[int, int], np.ndarray]:
    """A random ``size`` px square of ``codes`` holding labelled pixels (the most labelled of ``tries`` when the
    first ones hold none), as its (row, col) and its codes; a batch of no-data crops alone has no loss."""
    best: tuple[tuple[int, int], np.ndarray] | None = None
    for _ in range(tries):
        row, col = (int(rng.integers(0, n - size + 1)) for n in codes.shape)
        crop = codes[row : row + size, col : col + size]
        if best is None or np.count_nonzero(crop) > np.count_nonzero(best[1]):
            best = (row, col), crop
        if np.count_nonzero(crop) > 0:
            break
    assert best is not None
    return best


def _grid_crop(codes: np.ndarray, size: int, k: int) -> tuple[tuple[int, int], np.ndarray]:
    """The ``k``-th of n x n ``size`` px squares spread evenly over ``codes``, n the fewest that cover it."""
    n = -(-codes.shape[0] // size)
    starts = np.linspace(0, codes.shape[0] - size, n).round().astype(int)
    row, col = int(starts[k // n]), int(starts[k % n])
    return (row, col), codes[row : row + size, col : col + size]


def loaders(
    manifest: Manifest,
    *,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    ranks: Ranks | None = None,
    radiometric: bool = True,
    crop: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders over this rank's share of the patches. The train loader shuffles and augments
    (flips and quarter turns, and with ``radiometric`` brightness, contrast and haze). With ``crop`` below the
    patch size both give crops of that size (``PatchDataset``): random ones to train, a grid to validate.

    ``batch_size`` is per process. Call ``loader.sampler.set_epoch(epoch)`` before
    each training epoch for a new order. A training batch of one would break
    DeepLab's ASPP pooling BatchNorm in train mode, so a last batch of exactly one
    patch is dropped (on every rank alike: all ranks get equal training shares).
    """
    ranks = ranks or Ranks()
    common = {"mean": mean, "std": std, "scale": manifest.input_scale}
    train_set = PatchDataset(manifest.train, augment=True, radiometric=radiometric, crop=crop,
                             patch_size=manifest.patch_size, **common)
    val_set = PatchDataset(manifest.val, augment=False, crop=crop, patch_size=manifest.patch_size, **common)
    train_sampler = ShardSampler(len(train_set), ranks, shuffle=True, even=True, seed=seed)
    val_sampler = ShardSampler(len(val_set), ranks, shuffle=False, even=False)
    extra: dict[str, Any] = {"num_workers": workers, "pin_memory": pin_memory}
    if workers > 0:
        extra["persistent_workers"] = True
    train = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=train_sampler,
        drop_last=len(train_sampler) % batch_size == 1,
        **extra,
    )
    val = DataLoader(val_set, batch_size=batch_size, sampler=val_sampler, **extra)
    return train, val


def statistics_loader(
    manifest: Manifest,
    *,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    seed: int = 0,
    ranks: Ranks | None = None,
    crop: int = 0,
) -> DataLoader:
    """Training patches as the model sees them at prediction time (no augmentation; with ``crop``, the grid of
    crops of that size), in a fixed shuffled order.

    For re-estimating BatchNorm statistics (``batchnorm.reestimate``): every rank
    takes the same number of full batches, of at least two patches.
    """
    ranks = ranks or Ranks()
    data = PatchDataset(manifest.train, scale=manifest.input_scale, mean=mean, std=std, crop=crop,
                        patch_size=manifest.patch_size)
    sampler = ShardSampler(len(data), ranks, shuffle=True, even=True, seed=seed + 1)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=len(sampler) % batch_size == 1)
