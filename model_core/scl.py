"""The Sentinel-2 Scene Classification Layer (SCL) class table: the one source of truth.

Every code, name and colour the plugin shows or learns comes from ``SCL_CLASSES``:
the model's class count, the loss ``ignore_index``, metric labels, GeoTIFF colour
tables, figure legends and ``resources/scl.qml``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SclClass:
    """One SCL code with its name and legend colour."""

    code: int
    name: str
    color: str  # "#rrggbb", the ESA / Sentinel Hub legend

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an (r, g, b) tuple of 0-255 ints."""
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


SCL_CLASSES: tuple[SclClass, ...] = (
    SclClass(0, "No data", "#000000"),
    SclClass(1, "Saturated or defective", "#ff0000"),
    SclClass(2, "Dark area pixels", "#2f2f2f"),  # "Topographic casted shadows" since baseline 04.00
    SclClass(3, "Cloud shadows", "#643200"),
    SclClass(4, "Vegetation", "#00a000"),
    SclClass(5, "Not vegetated", "#ffe65a"),
    SclClass(6, "Water", "#0000ff"),
    SclClass(7, "Unclassified", "#808080"),
    SclClass(8, "Cloud medium probability", "#c0c0c0"),
    SclClass(9, "Cloud high probability", "#ffffff"),
    SclClass(10, "Thin cirrus", "#64c8ff"),
    SclClass(11, "Snow or ice", "#ff96ff"),
)

NO_DATA = 0  # never a training target: loss and metrics ignore it
LEARNED: tuple[SclClass, ...] = SCL_CLASSES[1:]  # the model's outputs: class index = code - 1
NUM_CLASSES = len(LEARNED)
MAX_CODE = SCL_CLASSES[-1].code
IGNORE_INDEX = -100  # torch's cross-entropy default; where code 0 lands after code_to_index

BY_CODE: dict[int, SclClass] = {c.code: c for c in SCL_CLASSES}


def name_of(code: int) -> str:
    """The class name of an SCL code."""
    return BY_CODE[code].name


def learned_codes() -> list[int]:
    """The SCL codes the model predicts, in class-index order."""
    return [c.code for c in LEARNED]


def learned_names() -> list[str]:
    """Names of the learned classes, in class-index order."""
    return [c.name for c in LEARNED]


def code_to_index(codes: np.ndarray) -> np.ndarray:
    """Map SCL codes to class indices (code - 1); code 0 becomes ``IGNORE_INDEX``."""
    codes = np.asarray(codes)
    out = codes.astype(np.int64) - 1
    out[codes == NO_DATA] = IGNORE_INDEX
    return out


def index_to_code(indices: np.ndarray) -> np.ndarray:
    """Map class indices (0-10) back to SCL codes (1-11) as uint8."""
    return (np.asarray(indices) + 1).astype(np.uint8)


def unknown_codes(codes: np.ndarray) -> list[int]:
    """Values in ``codes`` that are not SCL codes 0-11, sorted."""
    values = np.unique(np.asarray(codes))
    return [int(v) for v in values if v < 0 or v > MAX_CODE or int(v) != v]


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """The GDAL colour table for single-band uint8 SCL rasters (code 0 transparent)."""
    table = {c.code: (*c.rgb, 255) for c in SCL_CLASSES}
    table[NO_DATA] = (0, 0, 0, 0)
    return table


def palette_rgb() -> np.ndarray:
    """A (256, 3) uint8 lookup table from code to colour, for drawing figures."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    for c in SCL_CLASSES:
        lut[c.code] = c.rgb
    return lut
