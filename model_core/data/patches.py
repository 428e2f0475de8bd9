"""Cut a scene and its SCL into training patches, with a manifest (``index.json``).

The scene is read window by window, never whole. The SCL is seen on the scene's grid
(nearest neighbour, so codes stay codes) whatever its own resolution or CRS. Every
file goes into a temporary folder that becomes the output folder only when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from .. import scl
from ..atomic import atomic_folder, check_replaceable
from ..errors import InputError
from ..progress import SILENT, Progress, SubProgress, check_canceled
from .radiometry import input_scale, missing_pixels
from .raster_write import checked_raster
from .rasters import check_bands, check_scl_codes, label_profile, onto_grid, open_raster, write_scl
from .windows import DROPPED, TRAIN, VAL, Split, largest_patch, plan_windows, split_windows, window_id

FORMAT, VERSION = "scl-deeplab-patches", 1
INDEX_NAME, PREVIEW_NAME = "index.json", "preview.png"
PATCH_MULTIPLE = 8  # DeepLab downsamples by 8; other sizes lose border pixels on the way back up


@dataclass(frozen=True)
class PatchConfig:
    """How to cut patches; ``stride_px=None`` means the patch size (no overlap)."""

    patch_size_px: int = 512
    stride_px: int | None = None
    bands: tuple[int, int, int] = (1, 2, 3)
    min_valid_fraction: float = 0.5
    val_fraction: float = 0.2
    split: Split = "blocks"
    seed: int = 0
    overwrite: bool = False
    preview_patches: int = 4

    @property
    def stride(self) -> int:
        """The stride in pixels."""
        return self.patch_size_px if self.stride_px is None else self.stride_px


@dataclass(frozen=True)
class PatchResult:
    """What ``make_patches`` wrote and how many patches went where."""

    index: Path
    preview: Path
    train_count: int
    val_count: int
    tried: int
    dropped: int  # training patches left out because they overlapped validation patches
    class_histogram: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_bands(text: str) -> tuple[int, int, int]:
    """``"4,3,2"`` -> (4, 3, 2): the red, green and blue band numbers (1-based)."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        bands = tuple(int(p) for p in parts)
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise InputError(
            f"Bands {text!r} are not three band numbers; give red, green and blue as e.g. '1,2,3' (counted from 1)."
        )
    return bands  # type: ignore[return-value]


def check_config(config: PatchConfig, width: int, height: int) -> None:
    """Refuse settings that cannot give patches of this ``width`` x ``height`` scene."""
    size = config.patch_size_px
    if size <= 0 or size % PATCH_MULTIPLE:
        lower = max(PATCH_MULTIPLE, size // PATCH_MULTIPLE * PATCH_MULTIPLE)
        raise InputError(
            f"The patch size {size} px is not a positive multiple of {PATCH_MULTIPLE}; use e.g. {lower} or {lower + 8}."
        )
    if size > width or size > height:
        raise InputError(
            f"The patch size {size} px is larger than the scene ({width} x {height} px); "
            f"use at most {largest_patch(width, height, PATCH_MULTIPLE)}."
        )
    if config.stride <= 0:
        raise InputError(
            f"The stride must be a positive number of pixels, not {config.stride}; "
            f"use the patch size ({size}) for patches side by side, or less for overlapping ones."
        )
    if not 0.0 <= config.min_valid_fraction <= 1.0:
        raise InputError(f"The minimum valid fraction must be between 0 and 1, not {config.min_valid_fraction}.")
    if not 0.0 <= config.val_fraction < 1.0:
        raise InputError(f"The validation fraction must be at least 0 and below 1, not {config.val_fraction}.")


def make_patches(
    image: Path | str, mask: Path | str, out_dir: Path | str, config: PatchConfig, *, progress: Progress = SILENT
) -> PatchResult:
    """Write image and SCL patch GeoTIFFs, ``index.json`` and ``preview.png`` into ``out_dir``.

    Raises:
        InputError: bad settings, a mask with codes outside 0-11, or no patch with enough valid pixels.
        BandCountError, GridError, RasterReadError: unusable inputs.
        OutputError: ``out_dir`` is not empty (and ``config.overwrite`` is off) or cannot be written.
        Canceled: the user stopped; ``out_dir`` is left as it was.
    """
    from ..evaluation.preview import write_preview  # matplotlib is only needed at the end

    image, mask, out_dir = Path(image).resolve(), Path(mask).resolve(), Path(out_dir)
    if config.overwrite:
        check_replaceable(out_dir, marker=INDEX_NAME, is_ours=_is_patches_index, inputs=(image, mask),
                          own=(INDEX_NAME, PREVIEW_NAME, "images", "masks"))
    with open_raster(image) as src:
        check_bands(src, config.bands)
        dtype = np.result_type(*(src.dtypes[b - 1] for b in config.bands)).name
        scale = input_scale(dtype)
        check_config(config, src.width, src.height)
        windows = plan_windows(src.width, src.height, config.patch_size_px, config.stride)
        check_mask_codes(mask)
        progress.info(
            f"{len(windows)} patches of {config.patch_size_px} px (stride {config.stride} px) "
            f"cover the {src.width} x {src.height} px scene."
        )
        with onto_grid(mask, src) as labels, atomic_folder(out_dir, overwrite=config.overwrite) as tmp:
            records, best = _cut(src, labels, windows, tmp, config, dtype, mask, SubProgress(progress, 0, 90))
            if not records:
                raise InputError(
                    f"None of the {len(windows)} patches has at least {config.min_valid_fraction:.0%} valid SCL "
                    f"pixels (non-zero codes); the best has {best:.1%}. Lower the minimum valid fraction, or check "
                    "that the mask is the SCL of this scene."
                )
            split = split_windows(
                [r.pop("_window") for r in records],
                split=config.split,
                val_fraction=config.val_fraction,
                seed=config.seed,
                patch_size_px=config.patch_size_px,
            )
            kept = []
            for record, side in zip(records, split):
                if side == DROPPED:
                    (tmp / record["image"]).unlink()
                    (tmp / record["mask"]).unlink()
                else:
                    kept.append({**record, "split": side})
            histogram = _class_histogram(kept)
            manifest = _manifest(image, mask, src.crs, dtype, scale, config, histogram, kept)
            (tmp / INDEX_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            n_train = sum(r["split"] == TRAIN for r in kept)
            n_val = len(kept) - n_train
            dropped = len(records) - len(kept)
            _report(progress, len(windows), len(records), n_train, n_val, dropped, config)
            check_canceled(progress)
            write_preview(tmp, manifest, tmp / PREVIEW_NAME, count=config.preview_patches, seed=config.seed)
    progress.set_progress(100)
    return PatchResult(out_dir / INDEX_NAME, out_dir / PREVIEW_NAME, n_train, n_val, len(windows), dropped, histogram)


def _is_patches_index(path: Path) -> bool:
    """True when ``path`` is an index this module wrote."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_mask_codes(mask: Path, rows_per_read: int = 512) -> None:
    """Raise ``MaskCodeError`` naming every value of ``mask`` (band 1) that is not an SCL code 0-11."""
    seen: set = set()
    with open_raster(mask) as src:
        for row in range(0, src.height, rows_per_read):
            window = Window(0, row, src.width, min(rows_per_read, src.height - row))
            seen.update(np.unique(src.read(1, window=window)).tolist())
    check_scl_codes(np.array(sorted(seen)), f"The mask {mask}")


def _cut(
    src: rasterio.io.DatasetReader,
    labels: rasterio.io.DatasetReader,
    windows: list[Window],
    folder: Path,
    config: PatchConfig,
    dtype: str,
    mask: Path,
    progress: Progress,
) -> tuple[list[dict[str, Any]], float]:
    """Write the patches with enough valid pixels; return their records and the best valid share seen."""
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    records: list[dict[str, Any]] = []
    best = 0.0
    for done, window in enumerate(windows):
        check_canceled(progress)
        codes = labels.read(1, window=window)
        codes = codes.astype(np.uint8)
        pixels = src.read(list(config.bands), window=window)
        # NaN or no-data image pixels have no usable label either: they count as code 0.
        missing = missing_pixels(pixels, [src.nodatavals[b - 1] for b in config.bands])
        codes[missing] = scl.NO_DATA
        valid = float(np.count_nonzero(codes)) / codes.size
        best = max(best, valid)
        if valid > 0 and valid >= config.min_valid_fraction:
            name = window_id(window)
            transform = window_transform(window, src.transform)
            profile = _patch_profile(src, window, transform, dtype)
            if missing.any():
                pixels = pixels.copy()
                pixels[:, missing] = 0
            path = folder / "images" / f"{name}.tif"
            with checked_raster(path, path, **profile) as dst:
                dst.write(pixels.astype(dtype, copy=False))
            write_scl(folder / "masks" / f"{name}.tif", codes, label_profile(profile))
            counts = np.bincount(codes.ravel(), minlength=scl.MAX_CODE + 1)
            records.append(
                {
                    "id": name,
                    "image": f"images/{name}.tif",
                    "mask": f"masks/{name}.tif",
                    "window": {
                        "col_off": int(window.col_off),
                        "row_off": int(window.row_off),
                        "width": int(window.width),
                        "height": int(window.height),
                    },
                    "bounds": [float(v) for v in window_bounds(window, src.transform)],
                    "valid_fraction": round(valid, 4),
                    "histogram": {str(c): int(n) for c, n in enumerate(counts) if n},
                    "_window": window,
                }
            )
        progress.set_progress(100.0 * (done + 1) / len(windows))
    return records, best


def _patch_profile(src: rasterio.io.DatasetReader, window: Window, transform, dtype: str) -> dict[str, Any]:
    profile = {
        "driver": "GTiff",
        "width": int(window.width),
        "height": int(window.height),
        "count": 3,
        "dtype": dtype,
        "crs": src.crs,
        "transform": transform,
        "nodata": src.nodata,
        "compress": "deflate",
    }
    if profile["dtype"] == "uint8":
        profile["photometric"] = "RGB"
    return profile


def _class_histogram(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Pixel counts by SCL code (all codes 0-11 as string keys) for train, val and total."""
    out = {}
    for part in (TRAIN, VAL, "total"):
        counts = np.zeros(scl.MAX_CODE + 1, dtype=np.int64)
        for r in records:
            if part == "total" or r["split"] == part:
                for code, n in r["histogram"].items():
                    counts[int(code)] += n
        out[part] = {str(c): int(n) for c, n in enumerate(counts)}
    return out


def _manifest(image, mask, crs, dtype, scale, config, histogram, records) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "patch_size": config.patch_size_px,
        "stride": config.stride,
        "bands": list(config.bands),
        "dtype": dtype,
        "input_scale": float(scale),
        "crs": crs.to_string() if crs else None,
        "source": {"image": str(image), "mask": str(mask)},
        "split": config.split,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "min_valid_fraction": config.min_valid_fraction,
        "class_histogram": histogram,
        "patches": [
            {key: r[key] for key in ("id", "image", "mask", "split", "window", "bounds", "valid_fraction", "histogram")}
            for r in records
        ],
    }


def _report(progress: Progress, tried: int, passed: int, n_train: int, n_val: int, dropped: int, config) -> None:
    progress.info(
        f"{passed} of {tried} patches have at least {config.min_valid_fraction:.0%} valid SCL pixels: "
        f"{n_train} for training, {n_val} for validation."
    )
    if dropped:
        progress.info(f"{dropped} training patches overlapping validation patches were left out.")
    if config.val_fraction > 0 and n_val == 0:
        progress.warn("Too few patches to set some aside for validation; all of them are for training.")

