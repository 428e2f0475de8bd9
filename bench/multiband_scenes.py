"""Scenes for `make accuracy` from a time series stored one band per file (the layout of ../shared/s2-multiband).

Each ``Bxx_10m.tif`` / ``Bxx_20m.tif`` holds one acquisition per band, all on one
grid per resolution, with ``SCL_20m.tif`` beside them. This writes one 20 m GeoTIFF
per date with the bands B04 B03 B02 B8A B11 B12 (true colour first, so bands 1,2,3
are what a true-colour model and the colour lookup read; 10 m bands averaged over
their valid 2 x 2 pixels; uint16 reflectance x 10000, no data 0, band descriptions
= band names) and its SCL, then two scene lists: dates i % 3 != 2 train, dates
i % 3 == 2 are unseen.

    .venv/bin/python bench/multiband_scenes.py FOLDER OUT
    make accuracy TRAIN=OUT/train.txt VAL=OUT/val.txt MINUTES=5 ARGS="--patch-size 32 --bands 1,2,3"
    make accuracy TRAIN=OUT/train.txt VAL=OUT/val.txt MINUTES=5 ARGS="--patch-size 32 --bands 1,2,3,4,5,6"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

BANDS = ("B04", "B03", "B02", "B8A", "B11", "B12")


def read_band(folder: Path, name: str) -> tuple[np.ndarray, dict]:
    """(dates, h, w) values of one band at 20 m, and its 20 m profile; 10 m bands averaged over valid 2 x 2 pixels."""
    for resolution in ("20m", "10m"):
        path = folder / f"{name}_{resolution}.tif"
        if path.exists():
            break
    else:
        raise SystemExit(f"{folder} has no {name}_20m.tif or {name}_10m.tif; it needs the bands {', '.join(BANDS)}.")
    with rasterio.open(path) as src:
        data, profile = src.read().astype(np.float64), src.profile
    if resolution == "10m":
        dates, h, w = data.shape
        blocks = data[:, : h // 2 * 2, : w // 2 * 2].reshape(dates, h // 2, 2, w // 2, 2)
        valid = (blocks > 0).sum(axis=(2, 4))
        data = np.where(valid > 0, blocks.sum(axis=(2, 4)) / np.maximum(valid, 1), 0)
        profile = dict(profile, width=w // 2, height=h // 2, transform=profile["transform"] * profile["transform"].scale(2))
    return np.rint(data).astype(np.uint16), profile


def write_scenes(folder: Path, out: Path) -> tuple[Path, Path]:
    """Write the per-date scenes and the train / unseen scene lists into ``out``; returns the two lists."""
    with rasterio.open(folder / "SCL_20m.tif") as src:
        codes, profile = src.read(), src.profile
    stack = np.stack([read_band(folder, name)[0] for name in BANDS], axis=1)  # (dates, bands, h, w)
    if stack.shape[0] != codes.shape[0] or stack.shape[2:] != codes.shape[1:]:
        raise SystemExit(f"The bands {stack.shape} and SCL {codes.shape} of {folder} do not line up.")
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for i in range(codes.shape[0]):
        image, mask = out / f"d{i:03d}.tif", out / f"d{i:03d}_scl.tif"
        with rasterio.open(image, "w", **dict(profile, count=len(BANDS), dtype="uint16", nodata=0)) as dst:
            dst.write(stack[i])
            dst.descriptions = BANDS
        with rasterio.open(mask, "w", **dict(profile, count=1, dtype="uint8", nodata=0)) as dst:
            dst.write(codes[i].astype(np.uint8), 1)
        lines["val" if i % 3 == 2 else "train"].append(f"{image.name},{mask.name}")
    for split, rows in lines.items():
        (out / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return out / "train.txt", out / "val.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of per-band time-series GeoTIFFs and SCL_20m.tif")
    parser.add_argument("out", type=Path, help="where the scenes and the lists go")
    args = parser.parse_args(argv)
    train, val = write_scenes(args.folder, args.out)
    sys.stdout.write(f"{train}\n{val}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
