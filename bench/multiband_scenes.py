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

Across places: ``--names B04,B08,B11`` picks bands both places have (the Mol
series has B01 B04 B08 B11 only, on a 10 m grid, its 20 m bands and SCL
resampled to it: files ``*_20m_resampled_to_10m.tif``, read back at 20 m), and
``--split all-train`` / ``all-unseen`` puts every date of a place in one list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import rasterio

BANDS = ("B04", "B03", "B02", "B8A", "B11", "B12")


def band_file(folder: Path, name: str) -> tuple[Path, bool]:
    """The file holding band ``name`` (or SCL) in ``folder``, and whether it lies on a 10 m grid."""
    for pattern, on_10m in ((f"{name}_20m.tif", False), (f"{name}_10m.tif", True),
                            (f"{name}_*_resampled_to_10m.tif", True)):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0], on_10m
    raise SystemExit(f"{folder} has no {name}_20m.tif, {name}_10m.tif or {name}_*_resampled_to_10m.tif.")


def read_band(folder: Path, name: str) -> tuple[np.ndarray, dict]:
    """(dates, h, w) values of one band at 20 m, and its 20 m profile; 10 m bands averaged over valid 2 x 2 pixels."""
    path, on_10m = band_file(folder, name)
    with rasterio.open(path) as src:
        data, profile = src.read().astype(np.float64), src.profile
    if on_10m:
        dates, h, w = data.shape
        blocks = data[:, : h // 2 * 2, : w // 2 * 2].reshape(dates, h // 2, 2, w // 2, 2)
        valid = (blocks > 0).sum(axis=(2, 4))
        data = np.where(valid > 0, blocks.sum(axis=(2, 4)) / np.maximum(valid, 1), 0)
        profile = dict(profile, width=w // 2, height=h // 2, transform=profile["transform"] * profile["transform"].scale(2))
    return np.rint(data).astype(np.uint16), profile


def read_scl(folder: Path) -> tuple[np.ndarray, dict]:
    """(dates, h, w) SCL codes at 20 m and their profile; on a 10 m grid each 2 x 2 block's first pixel (the
    resampled 20 m value)."""
    path, on_10m = band_file(folder, "SCL")
    with rasterio.open(path) as src:
        codes, profile = src.read(), src.profile
    if on_10m:
        dates, h, w = codes.shape
        codes = codes[:, : h // 2 * 2 : 2, : w // 2 * 2 : 2]
        profile = dict(profile, width=w // 2, height=h // 2, transform=profile["transform"] * profile["transform"].scale(2))
    return codes, profile


def write_scenes(folder: Path, out: Path, names: tuple[str, ...] = BANDS, split: str = "dates") -> tuple[Path, Path]:
    """Write the per-date scenes and the train / unseen scene lists into ``out``; returns the two lists.

    ``split``: "dates" (every third date unseen), "all-train" or "all-unseen"."""
    codes, profile = read_scl(folder)
    stack = np.stack([read_band(folder, name)[0] for name in names], axis=1)  # (dates, bands, h, w)
    if stack.shape[0] != codes.shape[0] or stack.shape[2:] != codes.shape[1:]:
        raise SystemExit(f"The bands {stack.shape} and SCL {codes.shape} of {folder} do not line up.")
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for i in range(codes.shape[0]):
        image, mask = out / f"d{i:03d}.tif", out / f"d{i:03d}_scl.tif"
        with rasterio.open(image, "w", **dict(profile, count=len(names), dtype="uint16", nodata=0)) as dst:
            dst.write(stack[i])
            dst.descriptions = names
        with rasterio.open(mask, "w", **dict(profile, count=1, dtype="uint8", nodata=0)) as dst:
            dst.write(codes[i].astype(np.uint8), 1)
        unseen = split == "all-unseen" or (split == "dates" and i % 3 == 2)
        lines["val" if unseen else "train"].append(f"{image.name},{mask.name}")
    for split, rows in lines.items():
        (out / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return out / "train.txt", out / "val.txt"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of per-band time-series GeoTIFFs and SCL_20m.tif")
    parser.add_argument("out", type=Path, help="where the scenes and the lists go")
    parser.add_argument("--names", default=",".join(BANDS), help="band names in order (default %(default)s)")
    parser.add_argument("--split", choices=("dates", "all-train", "all-unseen"), default="dates",
                        help="every third date unseen (default), or all dates in one list")
    args = parser.parse_args(argv)
    train, val = write_scenes(args.folder, args.out, tuple(args.names.split(",")), args.split)
    sys.stdout.write(f"{train}\n{val}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
