"""Sample scenes: a georeferenced Sentinel-2-like true-colour image and its SCL.

The scene is built from smooth random fields (terrain, moisture, cloud, cirrus),
each a coarse random lattice interpolated to pixels, so any block of rows can be
computed on its own: the scene is written band by band and never held whole.
Class thresholds come from quantiles measured on a sparse preview of the same
fields, so every SCL class 1-11 appears whatever the size or seed. Colours of
neighbouring classes overlap (water, dark areas and cloud shadows; snow and
cloud; thin cirrus and bright soil), so learning them is possible but not trivial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.transform import from_origin

from .. import scl
from ..atomic import atomic_file
from ..errors import InputError
from ..progress import SILENT, Progress, check_canceled
from ..styles import write_style
from .noise import SmoothField
from .raster_write import checked_raster
from .rasters import label_profile

CRS = "EPSG:32633"
PIXEL_SIZE_M = 20.0
ORIGIN = (399960.0, 5000040.0)  # the corner of a Sentinel-2 tile in UTM 33N
BAND_ROWS = 256  # rows computed at a time; fixed so the output does not depend on memory
PREVIEW_PX = 384  # fields are sampled on at most this many rows and columns to pick thresholds
UINT16_SCALE = 2000.0 / 255.0  # 16-bit output: TCI 255 is reflectance 0.2 (DN 2000)

# Target shares (of the pixels still open when each class is placed).
CLOUD_HIGH, CLOUD_MEDIUM, CLOUD_FRINGE = 0.07, 0.07, 0.03
WATER, SNOW, CIRRUS, DARK, UNCLASSIFIED, BARE_SOIL = 0.12, 0.06, 0.12, 0.06, 0.03, 0.4

VEGETATION, NOT_VEGETATED, WATER_CODE, SNOW_CODE = 4, 5, 6, 11
SATURATED, DARK_CODE, SHADOW, UNCLASSIFIED_CODE = 1, 2, 3, 7
CLOUD_MEDIUM_CODE, CLOUD_HIGH_CODE, CIRRUS_CODE = 8, 9, 10


@dataclass(frozen=True)
class SampleScene:
    """What ``make_sample_scene`` wrote."""

    image: Path
    scl: Path
    width: int
    height: int
    class_counts: dict[int, int] = field(default_factory=dict)  # pixels per SCL code 0-11


@dataclass(frozen=True)
class _Thresholds:
    cloud_high: float
    cloud_medium: float
    cloud_fringe: float
    water: float
    snow: float
    cirrus: float
    dark: float
    unclassified: float
    soil: float


class _Generator:
    """The random fields of one scene and the rules that turn them into SCL codes and colours."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        side = min(width, height)
        base = float(np.clip(side / 3.0, 32.0, 384.0))  # scenes get more features, not bigger ones
        sun = rng.uniform(0.0, 2.0 * math.pi)
        # Shadows fall away from the sun; hills facing away from it are dark.
        self.shadow_shift = (0.22 * base * math.sin(sun), 0.22 * base * math.cos(sun))
        self.slope_shift = (0.04 * base * math.sin(sun), 0.04 * base * math.cos(sun))
        margin = 0.5 * base + 4.0
        streak = rng.uniform(0.0, 1.0) < 0.5  # cirrus streaks run along rows or along columns
        self.terrain = SmoothField(rng, height, width, base, base, 5, margin)
        self.moisture = SmoothField(rng, height, width, 0.8 * base, 0.8 * base, 3, margin)
        self.parcels = SmoothField(rng, height, width, 10.0, 14.0, 1, margin)
        self.cloud = SmoothField(rng, height, width, 0.5 * base, 0.5 * base, 5, margin)
        self.cirrus = SmoothField(
            rng, height, width, *((0.15 * base, 1.2 * base) if streak else (1.2 * base, 0.15 * base)), 3, margin
        )
        self.urban = SmoothField(rng, height, width, 0.15 * base, 0.15 * base, 2, margin)
        self.texture = SmoothField(rng, height, width, 3.0, 3.0, 1, margin)
        self.corner = int(rng.integers(4))
        self.specks = self._place_specks(rng)
        self.thresholds = self._measure_thresholds()

    def _place_specks(self, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
        """Small runs of saturated pixels (row, col, rows, cols), inside the data area."""
        count = max(3, self.width * self.height // 150_000)
        specks: list[tuple[int, int, int, int]] = []
        while len(specks) < count:
            h, w = int(rng.integers(1, 3)), int(rng.integers(2, 7))
            r, c = int(rng.integers(0, self.height - h)), int(rng.integers(0, self.width - w))
            if not self._no_data(np.arange(r, r + h), np.arange(c, c + w)).any():
                specks.append((r, c, h, w))
        return specks

    def _no_data(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """A triangle in one corner, as a swath edge leaves in real tiles."""
        v = (rows[:, None] + 0.5) / self.height
        u = (cols[None, :] + 0.5) / self.width
        if self.corner in (1, 2):
            u = 1.0 - u
        if self.corner in (2, 3):
            v = 1.0 - v
        return (u + v) < 0.3

    def _fields(self, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        terrain = self.terrain.at(rows, cols)
        return {
            "no_data": self._no_data(rows, cols),
            "terrain": terrain,
            "slope": self.terrain.at(rows, cols, self.slope_shift) - terrain,
            "moisture": self.moisture.at(rows, cols),
            "parcels": self.parcels.at(rows, cols),
            "cloud": self.cloud.at(rows, cols),
            "cloud_shadow": self.cloud.at(rows, cols, self.shadow_shift),
            "cirrus": self.cirrus.at(rows, cols),
            "urban": self.urban.at(rows, cols),
            "texture": self.texture.at(rows, cols),
        }

    def _measure_thresholds(self) -> _Thresholds:
        step_y = max(1, math.ceil(self.height / PREVIEW_PX))
        step_x = max(1, math.ceil(self.width / PREVIEW_PX))
        f = self._fields(np.arange(0, self.height, step_y), np.arange(0, self.width, step_x))
        data = ~f["no_data"]
        cloud = f["cloud"][data]
        high = np.quantile(cloud, 1.0 - CLOUD_HIGH)
        medium = np.quantile(cloud, 1.0 - CLOUD_HIGH - CLOUD_MEDIUM)
        fringe = np.quantile(cloud, 1.0 - CLOUD_HIGH - CLOUD_MEDIUM - CLOUD_FRINGE)
        clear = data & (f["cloud"] <= fringe) & (f["cloud_shadow"] <= medium)
        if clear.sum() < 50:  # a tiny scene under one cloud: let the shadow go, keep the ground classes
            clear = data & (f["cloud"] <= fringe)
        terrain = f["terrain"][clear]
        water, snow = np.quantile(terrain, WATER), np.quantile(terrain, 1.0 - SNOW)
        land = clear & (f["terrain"] >= water) & (f["terrain"] <= snow)
        cirrus = np.quantile(f["cirrus"][land], 1.0 - CIRRUS)
        rest = land & (f["cirrus"] <= cirrus)
        dark = np.quantile(f["slope"][rest], DARK)
        rest &= f["slope"] >= dark
        unclassified = np.quantile(f["urban"][rest], 1.0 - UNCLASSIFIED)
        rest &= f["urban"] <= unclassified
        soil = np.quantile(f["moisture"][rest], BARE_SOIL)
        return _Thresholds(high, medium, fringe, water, snow, cirrus, dark, unclassified, soil)

    def band(self, row0: int, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """SCL codes (rows, W) and a true-colour picture (3, rows, W) as float 0-255."""
        t = self.thresholds
        r = np.arange(row0, row0 + rows)
        f = self._fields(r, np.arange(self.width))

        water = f["terrain"] < t.water
        snow = f["terrain"] > t.snow
        land = ~water & ~snow
        dark = land & (f["slope"] < t.dark)
        urban = land & ~dark & (f["urban"] > t.unclassified)
        vegetated = f["moisture"] >= t.soil
        ground = np.where(vegetated, VEGETATION, NOT_VEGETATED)
        ground = np.where(urban, UNCLASSIFIED_CODE, ground)
        ground = np.where(dark, DARK_CODE, ground)
        ground = np.where(water, WATER_CODE, np.where(snow, SNOW_CODE, ground))

        cloud, shade = f["cloud"], f["cloud_shadow"]
        cloudy = cloud > t.cloud_fringe  # clouds and the faint fringe around them
        shadow = ~cloudy & (shade > t.cloud_medium)
        cirrus = ~cloudy & ~shadow & land & (f["cirrus"] > t.cirrus)
        codes = ground.astype(np.uint8)
        codes[cirrus] = CIRRUS_CODE
        codes[shadow] = SHADOW
        codes[cloudy] = UNCLASSIFIED_CODE
        codes[cloud > t.cloud_medium] = CLOUD_MEDIUM_CODE
        codes[cloud > t.cloud_high] = CLOUD_HIGH_CODE

        rgb = self._ground_colour(ground, f, t, rng)
        # Cloud shadows darken the ground and tint it towards the blue of the sky.
        # The half-shadow just outside the labelled shadow stays faint.
        start = t.cloud_medium - 0.3 * (t.cloud_medium - t.cloud_fringe)
        depth = _smoothstep(start, t.cloud_medium + 0.3 * (t.cloud_high - t.cloud_medium), shade)
        depth = np.where(cloudy, 0.0, depth)
        rgb *= 1.0 - 0.6 * depth
        rgb[2] += 10.0 * depth
        # Thin cirrus: a bluish veil over land.
        veil = np.where(cirrus, 0.2 + 0.25 * _smoothstep(t.cirrus, t.cirrus + 0.25, f["cirrus"]), 0.0)
        rgb = rgb * (1.0 - veil) + np.array([200.0, 215.0, 238.0])[:, None, None] * veil
        # Clouds: opacity grows with the cloud field; thick tops are white with grey texture.
        top = t.cloud_high + 0.6 * (t.cloud_high - t.cloud_medium)
        opacity = np.where(cloudy, 0.05 + 0.9 * _smoothstep(t.cloud_fringe, top, cloud), 0.0)
        grey = 222.0 + 28.0 * f["texture"] - 60.0 * np.clip(t.cloud_high - cloud, 0.0, None)
        rgb = rgb * (1.0 - opacity) + np.stack([grey, grey + 3.0, grey + 8.0]) * opacity

        rgb += rng.normal(0.0, 2.5, size=rgb.shape)
        rgb = np.clip(rgb, 1.0, 250.0)
        codes, rgb = self._burn_specks(codes, rgb, row0, rows)
        no_data = f["no_data"]
        codes[no_data] = scl.NO_DATA
        rgb[:, no_data] = 0.0
        return codes, rgb

    def _ground_colour(
        self, ground: np.ndarray, f: dict[str, np.ndarray], t: _Thresholds, rng: np.random.Generator
    ) -> np.ndarray:
        parcels = np.round(f["parcels"] * 3.0) / 3.0  # flat fields with sharp borders
        tex = f["texture"]
        wet = np.clip((f["moisture"] - t.soil) * 3.0, -1.0, 1.0)
        crop = np.clip(0.5 + 0.5 * parcels, 0.0, 1.0)[None]
        vegetation = (1.0 - crop) * _rgb(40, 78, 36) + crop * _rgb(88, 112, 52)
        soil = (1.0 - crop) * _rgb(158, 132, 100) + crop * _rgb(112, 92, 72)
        water = _rgb(18, 36, 58) + np.clip(f["moisture"], 0.0, 1.0)[None] * _rgb(22, 26, 6)  # turbid in places
        snow = _rgb(226, 232, 243)
        urban = _rgb(128, 126, 130) + 25.0 * parcels[None]
        land = np.where((ground == VEGETATION)[None], vegetation, soil)
        rgb = np.where((ground == UNCLASSIFIED_CODE)[None], urban, land)
        rgb = rgb * (1.0 + 0.12 * wet[None] * (ground == NOT_VEGETATED)[None])
        # Relief shading: slopes turned away from the sun are darker, the darkest are SCL "dark area".
        shading = np.clip(1.0 + 0.5 * f["slope"] / max(abs(t.dark), 1e-6), 0.45, 1.25)
        rgb = rgb * shading[None]
        rgb = np.where((ground == DARK_CODE)[None], rgb * 0.42, rgb)
        rgb = np.where((ground == WATER_CODE)[None], water, rgb)
        rgb = np.where((ground == SNOW_CODE)[None], snow * np.clip(shading, 0.8, 1.05)[None], rgb)
        return rgb * (1.0 + 0.06 * tex[None]) + 4.0 * rng.standard_normal(size=(1, *ground.shape))

    def _burn_specks(self, codes: np.ndarray, rgb: np.ndarray, row0: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        for r, c, h, w in self.specks:
            top, bottom = max(r, row0), min(r + h, row0 + rows)
            if top < bottom:
                codes[top - row0 : bottom - row0, c : c + w] = SATURATED
                rgb[:, top - row0 : bottom - row0, c : c + w] = 255.0
        return codes, rgb


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], dtype=np.float32)[:, None, None]


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    s = np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def scene_profile(width: int, height: int, dtype: str = "uint8") -> dict:
    """GeoTIFF profile of a 3-band true-colour sample scene (UTM 33N, 20 m pixels)."""
    profile = label_profile(
        {"width": width, "height": height, "crs": CRS, "transform": from_origin(*ORIGIN, PIXEL_SIZE_M, PIXEL_SIZE_M)},
        count=3,
        dtype=dtype,
    )
    if dtype == "uint8":
        profile["photometric"] = "RGB"
    return profile


def make_sample_scene(
    image_path: Path | str,
    scl_path: Path | str,
    *,
    size: int = 512,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
    dtype: Literal["uint8", "uint16"] = "uint8",
    progress: Progress = SILENT,
) -> SampleScene:
    """Write a seeded Sentinel-2-like scene: true colour (3 bands) and its SCL, both GeoTIFF.

    Args:
        image_path: the true-colour GeoTIFF to write (uint8 like TCI, or uint16 reflectance DN).
        scl_path: the SCL GeoTIFF to write (uint8 codes 0-11, colour table, ``.qml`` beside it).
        size: width and height in pixels, unless ``width`` / ``height`` are given.
        seed: the same seed always gives the same scene.
        dtype: "uint8" (0-255, TCI-like) or "uint16" (reflectance x 10000; 255 in TCI is 2000).
        progress: reports per block of rows; a cancel stops and leaves no file behind.

    Returns:
        The paths, size and pixel count of each SCL code.
    """
    width, height = int(width or size), int(height or size)
    if width < 32 or height < 32:
        raise InputError(f"A sample scene needs at least 32 x 32 pixels, not {width} x {height}.")
    if dtype not in ("uint8", "uint16"):
        raise InputError(f"dtype must be 'uint8' or 'uint16', not {dtype!r}.")
    image_path, scl_path = Path(image_path), Path(scl_path)
    generator = _Generator(width, height, seed)
    counts = np.zeros(scl.MAX_CODE + 1, dtype=np.int64)
    profile = scene_profile(width, height, dtype)
    with atomic_file(image_path) as tmp_image, atomic_file(scl_path) as tmp_scl:
        with (
            checked_raster(tmp_image, image_path, **profile) as img,
            checked_raster(tmp_scl, scl_path, **label_profile(profile)) as lab,
        ):
            lab.write_colormap(1, scl.colormap())
            for index, row0 in enumerate(range(0, height, BAND_ROWS)):
                check_canceled(progress)
                rows = min(BAND_ROWS, height - row0)
                codes, rgb = generator.band(row0, rows, np.random.default_rng([seed, index]))
                window = rasterio.windows.Window(0, row0, width, rows)
                pixels = np.rint(rgb * UINT16_SCALE if dtype == "uint16" else rgb).astype(dtype)
                img.write(pixels, window=window)
                lab.write(codes, 1, window=window)
                counts += np.bincount(codes.ravel(), minlength=counts.size)
                progress.set_progress(100.0 * (row0 + rows) / height)
    write_style(scl_path)
    return SampleScene(image_path, scl_path, width, height, {c: int(n) for c, n in enumerate(counts)})
