"""Small multispectral scenes: Sentinel-2-like reflectance bands named in their descriptions, with their SCL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

SCL_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
# Reflectance x 10000 per class (blue, green, red, NIR, SWIR 1, SWIR 2), roughly as Sentinel-2 sees them:
# water is dark in NIR and SWIR, snow bright in the visible and dark in SWIR, cloud bright everywhere.
SPECTRA = {
    4: (300, 600, 400, 3500, 1800, 900),  # vegetation
    5: (900, 1100, 1300, 2200, 2800, 2300),  # not vegetated
    6: (500, 450, 300, 150, 80, 50),  # water
    9: (5500, 5600, 5800, 6000, 4200, 3300),  # cloud
    11: (7500, 7400, 7300, 6800, 600, 400),  # snow
}


def class_map(size: int, seed: int = 0) -> np.ndarray:
    """(size, size) SCL codes: blocks of the classes of ``SPECTRA``, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    codes = np.array(sorted(SPECTRA), dtype=np.uint8)
    block = max(4, size // 8)
    cells = -(-size // block)
    grid = codes[rng.integers(len(codes), size=(cells, cells))]
    return np.kron(grid, np.ones((block, block), dtype=np.uint8))[:size, :size]


def write_multiband_scene(
    folder: Path, size: int = 96, *, names: tuple[str, ...] = SCL_BANDS, seed: int = 0, stem: str = "scene"
) -> tuple[Path, Path, np.ndarray]:
    """A uint16 reflectance scene (bands ``names``, described so) and its SCL; returns (image, scl, pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    codes = class_map(size, seed)
    rng = np.random.default_rng(seed + 100)
    order = [SCL_BANDS.index(n) if n in SCL_BANDS else i % len(SCL_BANDS) for i, n in enumerate(names)]
    pixels = np.zeros((len(names), size, size), dtype=np.uint16)
    for code, spectrum in SPECTRA.items():
        where = codes == code
        for i, source in enumerate(order):
            noise = rng.normal(0.0, 60.0, size=int(where.sum()))
            pixels[i][where] = np.clip(spectrum[source] + noise, 1, 10000).astype(np.uint16)
    profile = {"driver": "GTiff", "width": size, "height": size, "crs": "EPSG:32631",
               "transform": from_origin(600000.0, 5600000.0, 20.0, 20.0)}
    image, scl = folder / f"{stem}.tif", folder / f"{stem}_scl.tif"
    with rasterio.open(image, "w", count=len(names), dtype="uint16", nodata=0, **profile) as dst:
        dst.write(pixels)
        for i, name in enumerate(names):
            dst.set_band_description(i + 1, name)
    with rasterio.open(scl, "w", count=1, dtype="uint8", nodata=0, **profile) as dst:
        dst.write(codes, 1)
    return image, scl, pixels
