"""A raster write that fails (a full disk) raises and keeps the earlier file."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scl_deeplab.model_core.atomic import atomic_file
from scl_deeplab.model_core.data.raster_write import checked_raster, verify_raster
from scl_deeplab.model_core.errors import OutputError
from scl_deeplab.tests.full_disk import fill, tiny_disk

PROFILE = dict(driver="GTiff", dtype="uint8", count=1, width=512, height=512, crs="EPSG:32633",
               transform=from_origin(0, 0, 10, 10), compress="deflate", tiled=True, blockxsize=256,
               blockysize=256)


def write(path, values):
    with atomic_file(path) as tmp, checked_raster(tmp, path, **PROFILE) as dst:
        dst.write(values, 1)


def test_full_disk_raises_and_keeps_the_earlier_raster(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8)  # does not compress
    with tiny_disk(tmp_path / "disk", 512) as disk:
        write(disk / "out.tif", np.ones((512, 512), np.uint8))  # small: compresses well
        fill(disk, 64)
        with pytest.raises(OutputError, match=f"No space left on {disk}"):
            write(disk / "out.tif", noise)
        with rasterio.open(disk / "out.tif") as src:
            assert (src.read(1) == 1).all()
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "out.tif"]


def test_a_file_cut_short_fails_the_check_naming_the_output(tmp_path):
    part = tmp_path / ".out.x1.part.tif"
    with checked_raster(part, tmp_path / "out.tif", **PROFILE) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8), 1)
    size = part.stat().st_size
    with open(part, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(OutputError, match=f"Writing {tmp_path / 'out.tif'} failed"):
        verify_raster(part, tmp_path / "out.tif")


def test_an_intact_raster_passes(tmp_path):
    write(tmp_path / "out.tif", np.full((512, 512), 7, np.uint8))
    with rasterio.open(tmp_path / "out.tif") as src:
        assert (src.read(1) == 7).all()
