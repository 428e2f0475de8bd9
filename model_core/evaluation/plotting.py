"""Drawing helpers shared by every figure: SCL colours, legends and true colour.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so they render
the same in QGIS desktop, qgis_process and plain Python, from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import scl
from ..data import bands
from ..data.radiometry import input_scale


def scl_rgb(codes: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 picture of an SCL code array in the SCL palette."""
    return scl.palette_rgb()[np.clip(codes, 0, 255).astype(np.uint8)]


def true_colour(rgb: np.ndarray, scale: float) -> np.ndarray:
    """A (3, H, W) raw array as a displayable (H, W, 3) float image in 0-1."""
    img = np.moveaxis(rgb.astype(np.float32) / np.float32(scale), 0, -1)
    return np.clip(img, 0.0, 1.0)


def band_picture(raw: np.ndarray, names: Sequence[str], dtype: str) -> tuple[str, np.ndarray]:
    """A title and an (H, W, 3) picture of a (bands, H, W) array: true colour where red, green and blue are
    among ``names``, else a false-colour composite of the first three bands (each stretched to its 2-98 %)."""
    positions = bands.rgb_positions(names)
    if positions is not None:
        return "True colour", true_colour(raw[list(positions)], input_scale(dtype))
    chosen = list(bands.display_positions(names))
    picked = raw[chosen].astype(np.float32)
    out = np.zeros_like(picked)
    for i, band in enumerate(picked):
        valid = band[band != 0]
        if valid.size:
            low, high = np.percentile(valid, (2, 98))
            out[i] = np.clip((band - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    return f"False colour ({', '.join(names[i] for i in chosen)})", np.moveaxis(out, 0, -1)


def scl_legend(fig: Figure, codes: Iterable[int], **kwargs) -> None:
    """A figure legend listing the given SCL codes with their colours and names."""
    handles = [
        Patch(facecolor=scl.BY_CODE[c].color, edgecolor="#444444", label=f"{c} {scl.name_of(c)}")
        for c in sorted(set(int(c) for c in codes))
        if c in scl.BY_CODE
    ]
    kwargs.setdefault("loc", "lower center")
    kwargs.setdefault("ncol", min(4, max(1, len(handles))))
    kwargs.setdefault("fontsize", "small")
    kwargs.setdefault("frameon", False)
    fig.legend(handles=handles, **kwargs)
