"""Cutting one scene into patch GeoTIFFs: windows read in turn, the SCL on the image's grid.

Only patches with enough valid (non-zero) SCL pixels are written. SCL values outside 0-11
reach this point only when the user chose to treat them as no data (``scene_checks``
refuses them otherwise), and become 0 here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from rasterio.windows import transform as window_transform

from .. import scl
from ..progress import SILENT, Progress, check_canceled
from .radiometry import nodata_mask
from .raster_write import checked_raster
from .rasters import label_profile, onto_grid, open_raster, write_scl
from .scene_checks import SceneInfo
from .windows import plan_windows, window_id


def cut_scene(
    info: SceneInfo,
    folder: Path,
    *,
    bands: tuple[int, ...],
    patch_size_px: int,
    stride_px: int,
    min_valid_fraction: float,
    dtype: str,
    prefix: str = "",
    progress: Progress = SILENT,
    names: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], int, float]:
    """Write one scene's patches with enough valid pixels into ``folder``'s images/ and masks/.

    Returns:
        The patches' records (id, files relative to ``folder``, window, bounds, histogram, scene,
        valid fraction), the number of windows tried and the best valid share seen.
    """
    with open_raster(info.scene.image) as src, onto_grid(info.scene.mask, src) as labels:
        windows = plan_windows(src.width, src.height, patch_size_px, stride_px)
        progress.info(
            f"{info.scene.name}: {len(windows)} patches of {patch_size_px} px (stride {stride_px} px) "
            f"cover the {src.width} x {src.height} px scene."
        )
        records: list[dict[str, Any]] = []
        best = 0.0
        for done, window in enumerate(windows):
            check_canceled(progress)
            codes = labels.read(1, window=window)
            if info.unknown_codes:  # only when allowed: inspect_scene refuses them otherwise
                codes = np.where((codes < 0) | (codes > scl.MAX_CODE), scl.NO_DATA, codes)
            codes = codes.astype(np.uint8)
            labelled = float(np.count_nonzero(codes)) / codes.size
            if (labelled == 0 or labelled < min_valid_fraction) and labelled <= best:
                # Masking no-data pixels only lowers the share: this window can neither pass nor raise ``best``.
                progress.set_progress(100.0 * (done + 1) / len(windows))
                continue
            pixels = src.read(list(bands), window=window)
            # Pixels without image data (all bands 0, no-data values, NaN) have no usable label: code 0.
            missing = nodata_mask(pixels, [src.nodatavals[b - 1] for b in bands])
            codes[missing] = scl.NO_DATA
            valid = float(np.count_nonzero(codes)) / codes.size
            best = max(best, valid)
            if valid > 0 and valid >= min_valid_fraction:
                if missing.any():
                    pixels = pixels.copy()
                    pixels[:, missing] = 0
                records.append(
                    _write_patch(src, window, pixels, codes, folder, prefix + window_id(window), dtype, names)
                )
                records[-1].update(scene=info.scene.name, valid_fraction=round(valid, 4))
            progress.set_progress(100.0 * (done + 1) / len(windows))
    return records, len(windows), best


def _write_patch(src: rasterio.io.DatasetReader, window: Window, pixels: np.ndarray, codes: np.ndarray,
                 folder: Path, name: str, dtype: str, names: tuple[str, ...] = ()) -> dict[str, Any]:
    profile = _patch_profile(src, window, window_transform(window, src.transform), dtype, len(pixels))
    path = folder / "images" / f"{name}.tif"
    with checked_raster(path, path, **profile) as dst:
        dst.write(pixels.astype(dtype, copy=False))
        for i, band in enumerate(names if len(names) == len(pixels) else ()):
            dst.set_band_description(i + 1, band)
    write_scl(folder / "masks" / f"{name}.tif", codes, label_profile(profile))
    counts = np.bincount(codes.ravel(), minlength=scl.MAX_CODE + 1)
    return {
        "id": name, "image": f"images/{name}.tif", "mask": f"masks/{name}.tif", "window": window,
        "bounds": tuple(float(v) for v in window_bounds(window, src.transform)),
        "histogram": {str(c): int(n) for c, n in enumerate(counts) if n},
    }


def _patch_profile(src: rasterio.io.DatasetReader, window: Window, transform, dtype: str,
                   count: int = 3) -> dict[str, Any]:
    profile = {
        "driver": "GTiff",
        "width": int(window.width),
        "height": int(window.height),
        "count": count,
        "dtype": dtype,
        "crs": src.crs,
        "transform": transform,
        "nodata": src.nodata,
        "compress": "deflate",
    }
    if profile["dtype"] == "uint8" and count == 3:
        profile["photometric"] = "RGB"
    return profile
