"""From raster values to the model's input range.

The model sees true colour scaled to 0-1. 8-bit true colour (Sentinel-2 TCI, or
any 0-255 RGB) is divided by 255. 16-bit Sentinel-2 reflectance numbers (B04, B03,
B02 as in the product, quantification 10000) are mapped the way ESA makes TCI:
reflectance 0-0.25 spans the full range, brighter saturates (measured against a
real product's TCI). From processing baseline 04.00 on, raw numbers also carry
BOA_ADD_OFFSET (-1000): use scldeeplab:preparel2a, which removes it, rather than
the raw band files of such products.

Multispectral input (bands other than red, green, blue) keeps reflectance whole:
16-bit numbers are divided by 10000 (reflectance 0-1, brighter clipped), since NIR
and SWIR of vegetation, snow and cloud lie far above TCI's 0.25; each band is then
normalised by its mean and std over the training patches (stored in the checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

TCI_REFLECTANCE_MAX = 0.25  # ESA's TCI maps reflectance 0..0.25 onto 1..255
QUANTIFICATION = 10000.0


def input_scale(dtype: str | np.dtype, multispectral: bool = False) -> float:
    """The divisor that brings raw values of ``dtype`` to 0-1: true colour, or reflectance when ``multispectral``."""
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 255.0
    if kind in (np.uint16, np.int16, np.int32, np.uint32):
        return QUANTIFICATION if multispectral else QUANTIFICATION * TCI_REFLECTANCE_MAX
    if kind.kind == "f":
        return 1.0
    raise InputError(f"Rasters of type {kind} are not supported; use 8-bit true colour or 16-bit reflectance.")


def to_unit(raw: np.ndarray, scale: float) -> np.ndarray:
    """Raw values as float32 true colour in 0-1 (clipped)."""
    out = raw.astype(np.float32) / np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    # One NaN reaching the network spreads over a whole tile; it is no data, like 0.
    return np.nan_to_num(out, copy=False, nan=0.0)


def missing_pixels(raw: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """(H, W) True where any band of ``raw`` (bands, H, W) is NaN or every band holds its no-data value."""
    mask = np.zeros(raw.shape[1:], dtype=bool)
    if all(v is not None for v in nodata) and len(nodata) == raw.shape[0]:
        values = np.asarray(nodata, dtype=np.float64).reshape(-1, 1, 1)
        mask |= (raw == values.astype(raw.dtype)).all(axis=0)
    if raw.dtype.kind == "f":
        mask |= np.isnan(raw).any(axis=0)
    return mask


def nodata_mask(raw: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """(H, W) True where every band is 0, every band holds its no-data value, or any band is NaN.

    The one rule for pixels without data: Make patches labels them 0 (not learnt), Predict writes 0 there, and
    the baselines leave them out, so models and baselines are trained and scored on the same pixels.
    """
    return (raw == 0).all(axis=0) | missing_pixels(raw, nodata)
