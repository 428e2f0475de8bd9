"""Raster input and output shared by every task: opening with clear errors,
SCL GeoTIFFs with their colour table, and reading one raster onto another's grid.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from .. import scl
from ..errors import BandCountError, GridError, MaskCodeError, RasterReadError
from .raster_write import checked_raster


@contextmanager
def open_raster(path: Path | str) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster for reading, turning GDAL's errors into ``RasterReadError``.

    A read of this file that fails inside the block (a file cut short by a broken
    copy or download) becomes a ``RasterReadError`` that names the file too.
    """
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise RasterReadError(f"Cannot read the raster {path}: {exc}. Check that the file exists and is a raster.") from exc
    with src:
        try:
            yield src
        except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError) as exc:
            if "Read or write failed" not in str(exc) or str(src.name) not in str(exc):
                raise  # another file's error
            raise RasterReadError(
                f"The raster {path} is damaged (part of it cannot be read: {_first_line(exc)}). "
                "It may be cut short by an interrupted copy or download: copy, download or make it again."
            ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def check_readable(src: rasterio.io.DatasetReader) -> None:
    """Read the raster's last block, where a file cut short fails first (call inside ``open_raster``)."""
    *_, (_, last) = src.block_windows(1)
    src.read(window=last)


def check_bands(src: rasterio.io.DatasetReader, bands: tuple[int, ...], what: str = "scene") -> None:
    """Refuse band numbers the raster does not have (1-based)."""
    if src.count < 3 and len(bands) == 3:
        raise BandCountError(
            f"The {what} {src.name} has {src.count} band(s); a true-colour scene needs at least 3 (red, green, blue)."
        )
    bad = [b for b in bands if b < 1 or b > src.count]
    if bad:
        raise BandCountError(f"The {what} {src.name} has {src.count} bands; band(s) {bad} do not exist.")


def check_scl_codes(values: np.ndarray, where: str) -> None:
    """Raise ``MaskCodeError`` naming the values that are not SCL codes 0-11."""
    bad = scl.unknown_codes(values)
    if bad:
        shown = ", ".join(str(v) for v in bad[:10])
        raise MaskCodeError(
            f"{where}: codes {shown} are not SCL codes (0-{scl.MAX_CODE}). "
            "Use the Scene Classification Layer (SCL) band of a Sentinel-2 L2A product."
        )


def label_profile(like: rasterio.io.DatasetReader | dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A GeoTIFF profile for a uint8 SCL raster on the grid of ``like``."""
    base = like.profile if hasattr(like, "profile") else like
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": base["width"],
        "height": base["height"],
        "crs": base["crs"],
        "transform": base["transform"],
        "nodata": scl.NO_DATA,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if profile["width"] < 256 or profile["height"] < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize")
        profile.pop("blockysize")
    profile.update(overrides)
    return profile


def write_scl(path: Path | str, codes: np.ndarray, profile: dict[str, Any]) -> None:
    """Write a uint8 SCL array as a GeoTIFF with the SCL colour table embedded."""
    with checked_raster(path, path, **label_profile(profile)) as dst:
        dst.write(codes.astype(np.uint8), 1)
        dst.write_colormap(1, scl.colormap())


@contextmanager
def onto_grid(
    path: Path | str,
    like: rasterio.io.DatasetReader,
    *,
    resampling: Resampling = Resampling.nearest,
    what: str = "SCL",
) -> Iterator[rasterio.io.DatasetReader]:
    """Open ``path`` as seen on the grid of ``like`` (CRS, transform, size).

    Class codes must never be averaged, so SCL is always resampled with nearest.
    Raises ``GridError`` when the two rasters do not overlap.
    """
    with open_raster(path) as src:
        if src.crs is None or like.crs is None:
            raise GridError(f"The {what} raster {path} or the scene has no coordinate reference system; both need one.")
        if _disjoint(src, like):
            raise GridError(
                f"The {what} raster {path} does not overlap the scene {like.name}. "
                "Use the SCL of the same Sentinel-2 tile and date."
            )
        same_grid = src.crs == like.crs and src.transform == like.transform and src.shape == like.shape
        if same_grid:
            yield src
            return
        with WarpedVRT(
            src,
            crs=like.crs,
            transform=like.transform,
            width=like.width,
            height=like.height,
            resampling=resampling,
            nodata=src.nodata if src.nodata is not None else 0,
        ) as vrt:
            yield vrt


def _disjoint(a: rasterio.io.DatasetReader, b: rasterio.io.DatasetReader) -> bool:
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds(a.crs, b.crs, *a.bounds) if a.crs != b.crs else a.bounds
    bl, bb, br, bt = b.bounds
    return right <= bl or left >= br or top <= bb or bottom >= bt


def extent_window(src: rasterio.io.DatasetReader, bounds: tuple[float, float, float, float]) -> Window:
    """The pixel window of ``bounds`` (left, bottom, right, top, in the raster's CRS), clipped to the raster."""
    win = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
    full = Window(0, 0, src.width, src.height)
    try:
        return win.intersection(full)
    except rasterio.errors.WindowError as exc:
        raise GridError(f"The extent {bounds} does not overlap {src.name}.") from exc
