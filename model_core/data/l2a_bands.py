"""Band lists for L2A products: presets, reflectance numbers, and each band on the chosen grid.

A band list names Sentinel-2 bands (``B04,B03,B02,B8A,B11,B12``) or a preset:
``true colour`` (B04, B03, B02), ``SCL bands`` (B02, B03, B04, B8A, B11, B12, the bands
Sen2Cor's scene classification uses most) or ``20m`` (the nine bands of the 20 m product
except the 60 m aerosol band B01: B02-B07, B8A, B11, B12).

Each band becomes reflectance x 10000 in uint16, with the baseline's offset applied::

    value = round((DN + BOA_ADD_OFFSET) * 10000 / BOA_QUANTIFICATION_VALUE)
            0 where DN is 0 (no data), 1 where the reflectance is <= 0, at most 65535

A band read at a coarser resolution than the product holds it is the mean of the finer
pixels it covers (valid ones only; 10 m to 20 m is 2 x 2, to 60 m 6 x 6); a band read at a
finer resolution repeats each pixel (nearest neighbour: 20 m to 10 m is 2 x 2 copies, no
values are invented). Finer than that (a 60 m band at 10 or 20 m) is refused.
"""

from __future__ import annotations

import re

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import InputError
from .bands import SENTINEL2_BANDS, sentinel2_name

PRESETS: dict[str, tuple[str, ...]] = {
    "true colour": ("B04", "B03", "B02"),
    "scl bands": ("B02", "B03", "B04", "B8A", "B11", "B12"),
    "20m": ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"),
}
_ALIASES = {"truecolour": "true colour", "truecolor": "true colour", "true color": "true colour", "rgb": "true colour",
            "scl": "scl bands", "sclbands": "scl bands", "all 20 m bands": "20m", "20 m": "20m", "all20m": "20m"}
REFLECTANCE_SCALE = 10000  # uint16 output = reflectance x 10000
MAX_UPSAMPLING = 2  # 20 m to 10 m; a 60 m band is not spread over 36 pixels


def parse_band_list(text: str) -> tuple[str, ...]:
    """``"B04, b03,B2"`` -> ("B04", "B03", "B02"); a preset's name gives its bands; empty gives ().

    Raises:
        InputError: a name that is neither a Sentinel-2 L2A band nor a preset, or a band named twice.
    """
    key = re.sub(r"\s+", " ", str(text or "").strip().lower())
    if not key:
        return ()
    if key in PRESETS or key in _ALIASES or key.replace(" ", "") in _ALIASES:
        return PRESETS[_ALIASES.get(key, _ALIASES.get(key.replace(" ", ""), key))]
    names = [p.strip() for p in re.split(r"[,;\s]+", str(text).strip()) if p.strip()]
    found = [sentinel2_name(n) for n in names]
    bad = [n for n, f in zip(names, found) if f is None or f == "B10"]
    if bad or len(set(found)) < len(found):
        raise InputError(
            f"The band list {text!r} " + (f"names {', '.join(bad)}, not L2A bands" if bad else "names a band twice")
            + f". Give bands from {', '.join(SENTINEL2_BANDS)} separated by commas, or a preset: "
            + ", ".join(PRESETS) + "."
        )
    return tuple(found)  # type: ignore[arg-type]


def reflectance_from_dn(dn: np.ndarray, offset_dn: float, quantification: float) -> np.ndarray:
    """uint16 reflectance x 10000 from DN (see the module docstring), as float64 before rounding."""
    x = dn.astype(np.float64)
    valid = dn != 0
    x += offset_dn
    x *= REFLECTANCE_SCALE / quantification
    np.rint(x, out=x)
    np.clip(x, 1.0, 65535.0, out=x)
    x[~valid] = 0.0
    return x.astype(np.uint16)


def source_resolution(band: str, res: int, have: list[int], product: str, all_bands: list[str]) -> int:
    """The resolution to read ``band`` from for a ``res`` m output: the same, the next finer, or twice coarser.

    Raises:
        InputError: the product lacks the band (its bands are named), or holds it only far coarser.
    """
    if not have:
        raise InputError(
            f"{product} has no band {band}; it has {', '.join(all_bands)}. Choose bands from that list."
        )
    if res in have:
        return res
    finer = [r for r in have if r < res and res % r == 0]
    if finer:
        return max(finer)
    coarser = min(have)
    if coarser <= res * MAX_UPSAMPLING:
        return coarser
    raise InputError(
        f"{product} holds {band} only at {', '.join(f'{r} m' for r in have)}; at {res} m each of its pixels "
        f"would be copied {(coarser // res) ** 2} times. Choose RESOLUTION {coarser}, or leave {band} out."
    )


def averaged(src: rasterio.io.DatasetReader, win: Window, factor: int, offset_dn: float,
              quantification: float) -> np.ndarray:
    """The mean reflectance of the valid ``factor`` x ``factor`` blocks under each output pixel."""
    h, w = int(win.height), int(win.width)
    fine = Window(int(win.col_off) * factor, int(win.row_off) * factor, w * factor, h * factor)
    dn = src.read(1, window=fine, boundless=True, fill_value=0)
    refl = reflectance_from_dn(dn, offset_dn, quantification).astype(np.float64).reshape(h, factor, w, factor)
    valid = (dn != 0).reshape(h, factor, w, factor)
    counts = valid.sum(axis=(1, 3))
    sums = (refl * valid).sum(axis=(1, 3))
    out = np.zeros((h, w), dtype=np.float64)
    np.divide(sums, counts, out=out, where=counts > 0)
    out = np.rint(out)
    out[(counts > 0) & (out < 1)] = 1
    return out.astype(np.uint16)[None]
