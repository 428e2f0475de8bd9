"""Smooth random fields that can be evaluated on any block of pixels.

A coarse lattice of random values is interpolated to pixels with smoothstep weights,
written as two small matrix products (rows, then columns), so any band of rows costs
the same whether or not the rest of the scene is ever computed. Several lattices with
halving cell sizes add up to detail on several scales (fractal noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lattice:
    """A coarse grid of random values, smoothly interpolated to any pixel position."""

    values: np.ndarray  # (rows, cols) float32
    cell_y: float
    cell_x: float
    margin: float  # pixels of lattice before position 0, so shifted look-ups stay inside

    def at(self, rows: np.ndarray, cols: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Values at the grid ``rows`` x ``cols`` (pixel centres), optionally shifted by (dy, dx)."""
        wy = weights(rows + 0.5 + shift[0] + self.margin, self.cell_y, self.values.shape[0])
        wx = weights(cols + 0.5 + shift[1] + self.margin, self.cell_x, self.values.shape[1])
        return (wy @ self.values) @ wx.T


def weights(coords: np.ndarray, cell: float, nodes: int) -> np.ndarray:
    """A (len(coords), nodes) matrix of smoothstep interpolation weights."""
    t = np.asarray(coords, dtype=np.float64) / cell
    i0 = np.clip(np.floor(t).astype(np.int64), 0, nodes - 2)
    f = np.clip(t - i0, 0.0, 1.0)
    w = f * f * (3.0 - 2.0 * f)
    out = np.zeros((t.size, nodes), dtype=np.float32)
    idx = np.arange(t.size)
    out[idx, i0] = 1.0 - w
    out[idx, i0 + 1] = w
    return out


class SmoothField:
    """Sum of lattices with halving cell sizes: detail on several scales, values roughly in -1..1.

    Args:
        rng: where the lattice values come from (the field is fixed once built).
        height, width: the pixel extent the field must cover.
        cell_y, cell_x: lattice spacing of the coarsest octave in pixels (unequal gives streaks).
        octaves: how many lattices, each with half the previous cell size (at least 2 px).
        margin: extra pixels on every side, so shifted look-ups stay on the lattice.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        height: int,
        width: int,
        cell_y: float,
        cell_x: float,
        octaves: int,
        margin: float,
    ) -> None:
        self.layers: list[tuple[float, Lattice]] = []
        for k in range(octaves):
            cy, cx = max(cell_y / 2**k, 2.0), max(cell_x / 2**k, 2.0)
            rows = math.ceil((height + 2 * margin) / cy) + 2
            cols = math.ceil((width + 2 * margin) / cx) + 2
            values = rng.uniform(-1.0, 1.0, size=(rows, cols)).astype(np.float32)
            self.layers.append((0.55**k, Lattice(values, cy, cx, margin)))
        self.norm = 1.0 / sum(a for a, _ in self.layers)

    def at(self, rows: np.ndarray, cols: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Values at the grid ``rows`` x ``cols``, optionally shifted by (dy, dx) pixels."""
        total = sum(a * lat.at(rows, cols, shift) for a, lat in self.layers)
        return total * self.norm
