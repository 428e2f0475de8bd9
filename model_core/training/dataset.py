"""Training data: the patches manifest, checked, and a torch Dataset over its patches.

The manifest (``index.json``, written by Make patches) lists image and mask
GeoTIFFs of one size with a train/val split. The model sees true colour in 0-1,
normalised with the mean and std its weights expect; masks become class indices
(SCL code - 1, code 0 -> ``scl.IGNORE_INDEX``). Training patches are flipped and
rotated by multiples of 90 degrees at random, and their brightness, contrast
and haze jittered (``radiometric_jitter``); validation patches never are.
Several manifests (several scenes or areas) train as one when their patch size,
bands and scaling agree (``load_manifests``).
Under torchrun each process loads its own share (``distributed.ShardSampler``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch.utils.data import DataLoader, Dataset

from .. import scl
from ..data.radiometry import input_scale, to_unit
from ..errors import ManifestError, MaskCodeError
from ..progress import SILENT, Progress, check_canceled
from .distributed import Ranks, ShardSampler

FORMAT = "scl-deeplab-patches"
INDEX_NAME = "index.json"


@dataclass(frozen=True)
class PatchRecord:
    """One patch: its id, image and mask files (absolute) and split."""

    id: str
    image: Path
    mask: Path
    split: str


@dataclass(frozen=True)
class Manifest:
    """A checked patches manifest."""

    path: Path
    patch_size: int
    dtype: str
    input_scale: float
    train: tuple[PatchRecord, ...]
    val: tuple[PatchRecord, ...]
    bands: tuple[int, ...] = (1, 2, 3)  # the source scene's red, green, blue band numbers
    sources: tuple[Path, ...] = ()  # the manifests merged into this one; empty for a single manifest


def _names(records: Sequence[Any], n: int = 3) -> str:
    shown = ", ".join(str(r) for r in records[:n])
    return shown + (f" and {len(records) - n} more" if len(records) > n else "")


def load_manifest(path: Path | str) -> Manifest:
    """Read and check a patches manifest (``index.json`` or the folder holding it).

    Raises:
        ManifestError: missing or not a manifest, no patches, no train or no
            validation patches, patch files missing, or patches of mixed sizes.
    """
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    if not path.is_file():
        raise ManifestError(
            f"Patches manifest {path} does not exist. Run Make patches first and choose its index.json."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} cannot be read as a patches manifest ({exc}). Run Make patches again.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(
            f'{path} is not a patches manifest (no "format": "{FORMAT}"). Choose the index.json Make patches wrote.'
        )
    patches = data.get("patches") or []
    if not patches:
        raise ManifestError(
            f"The manifest {path} lists no patches. Run Make patches on a larger area or with a lower minimum "
            "valid fraction."
        )
    size = int(data.get("patch_size", 0))
    try:
        records = [
            PatchRecord(str(p.get("id", i)), path.parent / p["image"], path.parent / p["mask"], str(p.get("split")))
            for i, p in enumerate(patches)
        ]
        sizes = sorted({(p["window"]["width"], p["window"]["height"]) for p in patches if "window" in p})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(
            f"The manifest {path} is damaged: a patch entry lacks {exc}. Run Make patches again."
        ) from exc
    if any(s != (size, size) for s in sizes):
        raise ManifestError(
            f"The manifest {path} mixes patch sizes ({', '.join(f'{w}x{h}' for w, h in sizes)}; patch_size says "
            f"{size}). Make all patches with one PATCH_SIZE."
        )
    missing = [f.relative_to(path.parent) for r in records for f in (r.image, r.mask) if not f.is_file()]
    if missing:
        raise ManifestError(
            f"{len(missing)} patch files listed in {path} are missing: {_names(missing)}. Run Make patches again."
        )
    train = tuple(r for r in records if r.split == "train")
    val = tuple(r for r in records if r.split == "val")
    if not train:
        raise ManifestError(
            f"The manifest {path} has no training patches. Run Make patches with a lower validation fraction."
        )
    if not val:
        raise ManifestError(
            f"The manifest {path} has no validation patches, so training could not measure or choose the best epoch. "
            "Run Make patches with a validation fraction above 0 on an area with more patches."
        )
    dtype = str(data.get("dtype", "uint8"))
    scale = float(data.get("input_scale") or input_scale(dtype))
    bands = tuple(int(b) for b in data.get("bands") or (1, 2, 3))
    return Manifest(path, size, dtype, scale, train, val, bands)


def load_manifests(paths: Sequence[Path | str] | Path | str) -> Manifest:
    """Read one manifest, or several and merge them into one (see ``merge_manifests``).

    Raises:
        ManifestError: as ``load_manifest`` for any of them, no manifest given, or
            manifests that disagree (``merge_manifests``).
    """
    if isinstance(paths, (str, Path)):
        return load_manifest(paths)
    if not paths:
        raise ManifestError("No patches manifest given. Choose at least one index.json written by Make patches.")
    manifests = [load_manifest(p) for p in paths]
    return manifests[0] if len(manifests) == 1 else merge_manifests(manifests)


def merge_manifests(manifests: Sequence[Manifest]) -> Manifest:
    """One manifest holding the training and validation patches of all ``manifests``.

    The model sees one input format, so every manifest must have the same patch
    size, the same band order and the same scaling to 0-1 (pixel type and
    ``input_scale``); the first one's path names the result.

    Raises:
        ManifestError: two manifests disagree on one of those, or list the same one twice.
    """
    first = manifests[0]
    paths = [m.path.resolve() for m in manifests]
    twice = sorted({str(p) for p in paths if paths.count(p) > 1})
    if twice:
        raise ManifestError(f"The manifest {twice[0]} is given more than once; list each patches manifest once.")
    for other in manifests[1:]:
        for what, mine, theirs, fix in (
            ("patch size", first.patch_size, other.patch_size, "Make all patches with one PATCH_SIZE."),
            ("band order", first.bands, other.bands, "Make all patches with the same red, green, blue bands."),
            ("pixel type", first.dtype, other.dtype,
             "Convert the scenes to one type (8-bit true colour or 16-bit reflectance) before Make patches."),
            ("scaling to 0-1", first.input_scale, other.input_scale,
             "Make all patches from scenes of one kind (8-bit true colour or 16-bit reflectance)."),
        ):
            if mine != theirs:
                raise ManifestError(
                    f"The manifests {first.path} and {other.path} differ in {what} ({mine} and {theirs}), so they "
                    f"cannot train one model together. {fix}"
                )
    return Manifest(
        first.path, first.patch_size, first.dtype, first.input_scale,
        tuple(r for m in manifests for r in m.train), tuple(r for m in manifests for r in m.val),
        first.bands, tuple(m.path for m in manifests),
    )


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
        with rasterio.open(record.image) as img, rasterio.open(record.mask) as msk:
            if img.count < 3:
                raise ManifestError(f"Patch image {record.image} has {img.count} band(s); 3 (R, G, B) are needed.")
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


class PatchDataset(Dataset):
    """Image patches as normalised (3, H, W) float32 tensors, masks as (H, W) int64 class indices."""

    def __init__(
        self,
        records: Sequence[PatchRecord],
        *,
        scale: float,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        radiometric: bool = False,
    ) -> None:
        """``augment``: random flips and quarter turns; ``radiometric``: also ``radiometric_jitter``."""
        self.records = list(records)
        self.scale = scale
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.augment = augment
        self.radiometric = radiometric

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch ``item``: an index, or (index, augmentation seed) as ``distributed.ShardSampler`` gives."""
        i, augmentation_seed = item if isinstance(item, tuple) else (item, item)
        record = self.records[i]
        with rasterio.open(record.image) as img, rasterio.open(record.mask) as msk:
            raw = img.read((1, 2, 3))
            codes = msk.read(1)
        unit = to_unit(raw, self.scale)
        target = scl.code_to_index(codes)
        # Seeded per patch and epoch by the sampler: the same whatever the number of processes or workers.
        rng = np.random.default_rng(augmentation_seed)
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            unit, target = np.rot90(unit, k, axes=(1, 2)), np.rot90(target, k)
            if flip:
                unit, target = unit[:, :, ::-1], target[:, ::-1]
        if self.radiometric:
            unit = radiometric_jitter(np.ascontiguousarray(unit), rng)
        image = (unit - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(target))


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
) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders over this rank's share of the patches. The train loader shuffles and augments
    (flips and quarter turns, and with ``radiometric`` brightness, contrast and haze).

    ``batch_size`` is per process. Call ``loader.sampler.set_epoch(epoch)`` before
    each training epoch for a new order. A training batch of one would break
    DeepLab's ASPP pooling BatchNorm in train mode, so a last batch of exactly one
    patch is dropped (on every rank alike: all ranks get equal training shares).
    """
    ranks = ranks or Ranks()
    common = {"mean": mean, "std": std, "scale": manifest.input_scale}
    train_set = PatchDataset(manifest.train, augment=True, radiometric=radiometric, **common)
    val_set = PatchDataset(manifest.val, augment=False, **common)
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
) -> DataLoader:
    """Training patches as the model sees them at prediction time (no augmentation), in a fixed shuffled order.

    For re-estimating BatchNorm statistics (``batchnorm.reestimate``): every rank
    takes the same number of full batches, of at least two patches.
    """
    ranks = ranks or Ranks()
    data = PatchDataset(manifest.train, scale=manifest.input_scale, mean=mean, std=std)
    sampler = ShardSampler(len(data), ranks, shuffle=True, even=True, seed=seed + 1)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=len(sampler) % batch_size == 1)
