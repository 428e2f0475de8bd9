"""From raster values to the model's input range.

The model sees true colour scaled to 0-1. 8-bit true colour (Sentinel-2 TCI, or
any 0-255 RGB) is divided by 255. 16-bit Sentinel-2 reflectance numbers (B04, B03,
B02 as in the product, quantification 10000) are mapped the way ESA makes TCI:
reflectance 0-0.25 spans the full range, brighter saturates (measured against a
real product's TCI). From processing baseline 04.00 on, raw numbers also carry
BOA_ADD_OFFSET (-1000): use scldeeplab:preparel2a, which removes it, rather than
the raw band files of such products.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

TCI_REFLECTANCE_MAX = 0.25  # ESA's TCI maps reflectance 0..0.25 onto 1..255
QUANTIFICATION = 10000.0


def input_scale(dtype: str | np.dtype) -> float:
    """The divisor that brings raw values of ``dtype`` to 0-1 true colour."""
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 255.0
    if kind in (np.uint16, np.int16, np.int32, np.uint32):
        return QUANTIFICATION * TCI_REFLECTANCE_MAX
    if kind.kind == "f":
        return 1.0
    raise InputError(f"Rasters of type {kind} are not supported; use 8-bit true colour or 16-bit reflectance.")


def to_unit(raw: np.ndarray, scale: float) -> np.ndarray:
    """Raw values as float32 true colour in 0-1 (clipped)."""
    out = raw.astype(np.float32) / np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)
