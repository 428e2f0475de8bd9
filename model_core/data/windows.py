"""Patch window maths: where patches go and which ones train or validate.

Pure functions over pixel windows, so tests can check them exhaustively.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import numpy as np
from rasterio.windows import Window

from ..errors import InputError
from ..sizing import axis_offsets, largest_size

Split = Literal["blocks", "random", "scenes"]
SPLITS = ("blocks", "random", "scenes")
TRAIN, VAL, DROPPED = "train", "val", "dropped"
MIN_BLOCKS = 10  # spatial blocks grow (up to 4 x 4 patches) only while at least this many remain


def plan_windows(width: int, height: int, patch_size_px: int, stride_px: int) -> list[Window]:
    """Square windows covering a ``width`` x ``height`` scene, row by row, all inside it."""
    return [
        Window(col, row, patch_size_px, patch_size_px)
        for row in axis_offsets(height, patch_size_px, stride_px)
        for col in axis_offsets(width, patch_size_px, stride_px)
    ]


def window_id(window: Window) -> str:
    """A stable name from the window's offsets, e.g. ``r00000_c00512``."""
    return f"r{int(window.row_off):05d}_c{int(window.col_off):05d}"


def val_count(n: int, val_fraction: float) -> int:
    """How many of ``n`` patches validate: at least one when asked for, never all."""
    if n < 2 or val_fraction <= 0:
        return 0
    return min(n - 1, max(1, round(n * val_fraction)))


def split_windows(
    windows: list[Window], *, split: Split, val_fraction: float, seed: int, patch_size_px: int
) -> list[str]:
    """``"train"``, ``"val"`` or ``"dropped"`` for each window.

    ``"random"`` shuffles single patches. ``"blocks"`` assigns whole squares of neighbouring
    patches to validation, then drops training patches that overlap a validation patch, so no
    pixel is seen on both sides (this only happens when the stride is smaller than the patch).
    """
    if split not in ("blocks", "random"):
        raise InputError(f"Unknown split {split!r} for the patches of one scene; use 'blocks' or 'random'.")
    rng = np.random.default_rng(seed)
    target = val_count(len(windows), val_fraction)
    labels = [TRAIN] * len(windows)
    if target == 0:
        return labels
    if split == "random":
        for i in rng.permutation(len(windows))[:target]:
            labels[i] = VAL
        return labels
    blocks = _blocks(windows, patch_size_px)
    chosen = 0
    for key in rng.permutation(len(blocks)):
        members = blocks[key]
        # A block that would overshoot the target by more than half of it is skipped.
        if chosen + len(members) - target > len(members) / 2 or chosen + len(members) >= len(windows):
            continue
        for i in members:
            labels[i] = VAL
        chosen += len(members)
        if chosen >= target:
            break
    if chosen == 0:  # every block is too big: validate on the smallest one
        for i in min(blocks, key=len):
            labels[i] = VAL
    labels = _drop_overlaps(windows, labels)
    if TRAIN not in labels:  # too few patches to keep both sides apart: train on all of them
        return [TRAIN] * len(windows)
    return labels


def split_scenes(
    names: Sequence[str], *, val_names: Sequence[str] = (), val_fraction: float = 0.2, seed: int = 0
) -> list[str]:
    """``"train"`` or ``"val"`` for each scene: the scenes named in ``val_names``, else a seeded
    ``val_fraction`` of them (at least one, never all).

    Raises:
        InputError: fewer than 2 scenes, a name that is not a scene's, or every scene named.
    """
    if len(names) < 2:
        raise InputError(
            f"Splitting by scenes needs at least 2 scenes, not {len(names)}: one to train on and one to validate on. "
            "Give more scenes, or split by spatial blocks."
        )
    if val_names:
        unknown = [n for n in val_names if n not in names]
        if unknown:
            raise InputError(
                f"Validation scenes {', '.join(unknown)} are not among the scenes ({', '.join(names)}). "
                "Name them as listed."
            )
        if set(names) <= set(val_names):
            raise InputError("Every scene is named for validation; leave at least one to train on.")
        return [VAL if n in val_names else TRAIN for n in names]
    if not 0.0 < val_fraction < 1.0:
        raise InputError(
            f"The validation fraction {val_fraction} sends no scene to validation; use a fraction between 0 and 1, "
            "or name the validation scenes."
        )
    target = min(len(names) - 1, max(1, round(len(names) * val_fraction)))
    chosen = set(np.random.default_rng(seed).permutation(len(names))[:target].tolist())
    return [VAL if i in chosen else TRAIN for i in range(len(names))]


def _blocks(windows: list[Window], patch_size_px: int) -> list[list[int]]:
    """Window indices grouped by square blocks of k x k patch sizes (largest k leaving enough blocks)."""
    for k in (4, 3, 2, 1):
        side = k * patch_size_px
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, w in enumerate(windows):
            groups[(int(w.row_off) // side, int(w.col_off) // side)].append(i)
        if len(groups) >= MIN_BLOCKS or k == 1:
            return [groups[key] for key in sorted(groups)]
    raise AssertionError("unreachable")


def _drop_overlaps(windows: list[Window], labels: list[str]) -> list[str]:
    boxes = np.array([[w.col_off, w.row_off, w.col_off + w.width, w.row_off + w.height] for w in windows], float)
    val = np.array([lab == VAL for lab in labels])
    vb = boxes[val]
    out = list(labels)
    for i in np.flatnonzero(~val):
        b = boxes[i]
        overlap_x = np.minimum(b[2], vb[:, 2]) > np.maximum(b[0], vb[:, 0])
        overlap_y = np.minimum(b[3], vb[:, 3]) > np.maximum(b[1], vb[:, 1])
        if (overlap_x & overlap_y).any():
            out[i] = DROPPED
    return out


def largest_patch(width: int, height: int) -> int:
    """The largest patch size (a multiple of 8) that fits a ``width`` x ``height`` scene."""
    return largest_size(min(width, height))
