"""Checking scenes before any patch is cut: each one usable, all of them alike.

The rule the algorithm's help states: scenes may differ in size and CRS, but all need
the same data type (8-bit true colour or 16-bit reflectance, never a mix: the two are
scaled differently and the model would learn two colour scales) and the same pixel size
(to 1 %: objects would change size between scenes). A scene that breaks the rule is
refused, never converted behind the user's back, and every failing scene is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from .. import scl
from ..errors import BandCountError, Canceled, InputError, MaskCodeError, SclDeepLabError
from ..progress import SILENT, Progress, check_canceled
from .bands import band_names, check_same
from .rasters import check_bands, onto_grid, open_raster
from .scenes import Scene
from .windows import largest_patch

RESOLUTION_TOLERANCE = 0.01


@dataclass(frozen=True)
class SceneInfo:
    """What cutting a scene needs to know about it."""

    scene: Scene
    width: int
    height: int
    dtype: str
    resolution: tuple[float, float]
    crs: str | None
    unknown_codes: dict[int, int] = field(default_factory=dict)  # SCL values outside 0-11 -> pixels
    band_names: tuple[str, ...] = ()  # of the chosen bands (``bands.band_names``)

    @property
    def unknown_pixels(self) -> int:
        """Pixels of the SCL holding values outside 0-11."""
        return sum(self.unknown_codes.values())


def check_fits(patch_size_px: int, width: int, height: int) -> None:
    """Refuse a patch size larger than a ``width`` x ``height`` scene."""
    if patch_size_px > width or patch_size_px > height:
        raise InputError(
            f"The patch size {patch_size_px} px is larger than the scene ({width} x {height} px); "
            f"use at most {largest_patch(width, height)}."
        )


def unknown_codes(mask: Path | str, rows_per_read: int = 512) -> dict[int, int]:
    """Pixel counts of the values of ``mask`` (band 1, a path) that are not SCL codes 0-11."""
    counts: dict[int, int] = {}
    with open_raster(mask) as src:
        for row in range(0, src.height, rows_per_read):
            window = Window(0, row, src.width, min(rows_per_read, src.height - row))
            values, n = np.unique(src.read(1, window=window), return_counts=True)
            for value in scl.unknown_codes(values):
                counts[int(value)] = counts.get(int(value), 0) + int(n[values == value].sum())
    return dict(sorted(counts.items()))


def inspect_scene(scene: Scene, bands: tuple[int, ...], patch_size_px: int, unknown_as_no_data: bool) -> SceneInfo:
    """Open a scene and its SCL and check them; returns what cutting needs.

    Raises:
        RasterReadError, BandCountError, GridError: unreadable files, missing bands, an SCL not overlapping.
        MaskCodeError: SCL values outside 0-11 while ``unknown_as_no_data`` is off.
        InputError: the patch does not fit the scene.
    """
    with open_raster(scene.image) as src:
        check_bands(src, bands)
        dtype = np.result_type(*(src.dtypes[b - 1] for b in bands)).name
        check_fits(patch_size_px, src.width, src.height)
        with onto_grid(scene.mask, src):  # refuses an SCL that does not overlap its image
            pass
        bad = unknown_codes(scene.mask)
        if bad and not unknown_as_no_data:
            shown = ", ".join(str(v) for v in list(bad)[:10])
            raise MaskCodeError(
                f"The mask {scene.mask}: codes {shown} are not SCL codes (0-{scl.MAX_CODE}). Use the Scene "
                "Classification Layer (SCL) band of a Sentinel-2 L2A product, or, for an SCL with a few stray codes "
                "(lossy JPEG 2000 gives code 12 near class edges), treat codes outside 0-11 as no data."
            )
        crs = src.crs.to_string() if src.crs else None
        names = band_names(src, bands)
        return SceneInfo(scene, src.width, src.height, dtype, (abs(src.res[0]), abs(src.res[1])), crs, bad, names)


def inspect_scenes(
    scenes: Sequence[Scene],
    bands: tuple[int, ...],
    patch_size_px: int,
    unknown_as_no_data: bool = False,
    *,
    progress: Progress = SILENT,
) -> list[SceneInfo]:
    """Check every scene, then that all are alike; one scene's error is raised as it is.

    Raises:
        InputError: with several scenes, one message naming each failing scene and its reason.
        The errors of ``inspect_scene`` for a single scene.
    """
    infos, problems = [], []
    for done, scene in enumerate(scenes):
        check_canceled(progress)
        try:
            infos.append(inspect_scene(scene, bands, patch_size_px, unknown_as_no_data))
        except Canceled:
            raise
        except SclDeepLabError as exc:
            if len(scenes) == 1:
                raise
            problems.append(f"{scene.name} ({scene.image.name}): {exc}")
        progress.set_progress(100.0 * (done + 1) / len(scenes))
    if infos:
        first = infos[0]
        for info in infos[1:]:
            if info.dtype != first.dtype:
                problems.append(
                    f"{info.scene.name}: its bands are {_kind(info.dtype)}, those of {first.scene.name} "
                    f"{_kind(first.dtype)}; all scenes need one data type. Make them all with Prepare L2A or "
                    "Download L2A at the same SOURCE (TCI for 8-bit)"
                )
            elif _named_apart(info.band_names, first.band_names):
                problems.append(
                    f"{info.scene.name}: its bands are {', '.join(info.band_names)}, those of {first.scene.name} "
                    f"{', '.join(first.band_names)}; all scenes need the same bands in the same order. Give each "
                    "scene's bands in one order (Prepare L2A and Download L2A write them with their names)"
                )
            elif not np.allclose(info.resolution, first.resolution, rtol=RESOLUTION_TOLERANCE):
                problems.append(
                    f"{info.scene.name}: its pixels are {_size(info.resolution)}, those of {first.scene.name} "
                    f"{_size(first.resolution)}; all scenes need one pixel size. Make them at one RESOLUTION with "
                    "Prepare L2A, or resample with Raster > Projections > Warp"
                )
    if problems:
        raise InputError(
            f"{len(problems)} of {len(scenes)} scenes cannot be used (nothing was written):\n- "
            + "\n- ".join(p.rstrip(".") for p in problems)
        )
    return infos


def _named_apart(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    """Whether two scenes' band names differ where both are known."""
    try:
        check_same(theirs, mine, "", "")
    except BandCountError:
        return True
    return False


def _kind(dtype: str) -> str:
    return f"8-bit ({dtype})" if np.dtype(dtype).itemsize == 1 else f"{8 * np.dtype(dtype).itemsize}-bit ({dtype})"


def _size(resolution: tuple[float, float]) -> str:
    x, y = resolution
    return f"{x:g}" if x == y else f"{x:g} x {y:g}"
