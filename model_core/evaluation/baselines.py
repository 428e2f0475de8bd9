"""Baselines to set beside a model: the majority class and a per-pixel colour lookup.

The lookup quantises true colour (as the model sees it, 0-1) to 32 levels a
channel and answers the SCL code most frequent for that colour in the training
patches; colours never seen in training get the majority class. It knows
nothing of neighbours, so a model that cannot beat it has learnt no more than
colour. `make accuracy` and `make demo` print both beside the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from .. import scl
from ..data.radiometry import input_scale, nodata_mask, to_unit
from ..data.rasters import onto_grid
from .metrics import confusion_from_codes

LEVELS = 32
ROWS = 256  # rows read at a time from an evaluation scene


def colour_keys(unit: np.ndarray) -> np.ndarray:
    """(3, H, W) true colour in 0-1 -> (H, W) index of its 32 x 32 x 32 colour cell."""
    q = np.minimum((unit * LEVELS).astype(np.int64), LEVELS - 1)
    return (q[0] * LEVELS + q[1]) * LEVELS + q[2]


class ColourLookup:
    """Pixel counts by colour cell and SCL code, then the most frequent code per cell.

    ``scale`` brings raw values to 0-1 (the training patches' own; evaluation
    scenes are read with the same one, so a colour means the same cell in both).
    """

    def __init__(self, scale: float | None = None) -> None:
        self.counts = np.zeros((LEVELS**3, scl.MAX_CODE + 1), np.int64)
        self.scale = scale

    def add(self, unit: np.ndarray, codes: np.ndarray) -> None:
        """Count the pixels of one training patch (code 0, no data, is not counted)."""
        valid = codes > 0
        keys = colour_keys(unit)[valid] * (scl.MAX_CODE + 1) + codes[valid].astype(np.int64)
        self.counts += np.bincount(keys, minlength=self.counts.size).reshape(self.counts.shape)

    @property
    def majority(self) -> int:
        """The most frequent SCL code in training."""
        return int(self.counts[:, 1:].sum(0).argmax() + 1)

    def table(self) -> np.ndarray:
        """SCL code per colour cell; unseen cells get the majority code."""
        table = self.counts[:, 1:].argmax(1).astype(np.uint8) + 1
        table[self.counts[:, 1:].sum(1) == 0] = self.majority
        return table


def fit_lookup(records: list[tuple[Path, Path]], scale: float) -> ColourLookup:
    """The colour lookup of training patches, (image, mask) pairs, images brought to 0-1 by ``scale``."""
    lookup = ColourLookup(scale)
    for image, mask in records:
        with rasterio.open(image) as img, rasterio.open(mask) as msk:
            lookup.add(to_unit(img.read((1, 2, 3)), scale), msk.read(1))
    return lookup


def _blocks(height: int, width: int) -> Iterator[Window]:
    for row in range(0, height, ROWS):
        yield Window(0, row, width, min(ROWS, height - row))


def baseline_confusions(image: Path, reference: Path, lookup: ColourLookup) -> tuple[np.ndarray, np.ndarray]:
    """(majority, lookup) confusion matrices on one evaluation scene, on the image's grid.

    Pixels without image data (``nodata_mask`` of the three bands read) are left out, as Predict leaves them out
    of the model's output: both are scored on the same pixels.
    """
    table, majority = lookup.table(), lookup.majority
    n = scl.NUM_CLASSES
    by_majority, by_lookup = np.zeros((n, n), np.int64), np.zeros((n, n), np.int64)
    with rasterio.open(image) as src, onto_grid(reference, src, what="reference SCL") as ref_src:
        # The training patches' scale: a multispectral set's differs from true colour's rule for the same type.
        scale = lookup.scale if lookup.scale is not None else input_scale(src.dtypes[0])
        for window in _blocks(src.height, src.width):
            ref = ref_src.read(1, window=window)
            raw = src.read((1, 2, 3), window=window)
            ref = np.where(nodata_mask(raw, src.nodatavals[:3]), scl.NO_DATA, ref)
            unit = to_unit(raw, scale)
            by_lookup += confusion_from_codes(ref, table[colour_keys(unit)])
            by_majority += confusion_from_codes(ref, np.full_like(ref, majority))
    return by_majority, by_lookup
