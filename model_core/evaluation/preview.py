"""The dataset preview: a few patches as true colour | SCL | overlay, with a legend."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from matplotlib.figure import Figure

from .plotting import band_picture, scl_legend, scl_rgb, true_colour

SHOWN_PX = 256  # patches are drawn at most this many pixels wide
OVERLAY_ALPHA = 0.45


def pick_patches(patches: list[dict[str, Any]], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to ``count`` patches that together show as many SCL classes as possible.

    Greedy: each pick comes from a scene not shown yet while there is one, then adds the most
    classes not shown yet, taking training and validation patches in turn while both are left;
    ties go to a seeded shuffle, so the same dataset always gives the same figure.
    """
    order = np.random.default_rng(seed).permutation(len(patches))
    pool = [patches[i] for i in order]
    chosen: list[dict[str, Any]] = []
    shown: set[str] = set()
    scenes: set[str] = set()
    while pool and len(chosen) < count:
        side = "train" if len(chosen) % 2 == 0 else "val"
        candidates = [p for p in pool if p["split"] == side] or pool
        best = max(candidates, key=lambda p: (
            p.get("scene", "") not in scenes, len(set(p["histogram"]) - shown - {"0"}), p["valid_fraction"]))
        chosen.append(best)
        shown |= set(best["histogram"])
        scenes.add(best.get("scene", ""))
        pool.remove(best)
    return chosen


def write_preview(folder: Path, manifest: dict[str, Any], path: Path, *, count: int = 4, seed: int = 0) -> Path:
    """Draw the preview PNG of the patches listed in ``manifest`` (paths relative to ``folder``)."""
    patches = pick_patches(manifest["patches"], count, seed)
    scale = float(manifest["input_scale"])
    names = manifest.get("band_names") or None  # manifests from before multispectral input: true colour
    first = "True colour"
    rows = len(patches)
    n_scenes = len({p.get("scene", "") for p in manifest["patches"]})
    many = n_scenes > 1
    fig = Figure(figsize=(9.0, 3.0 * rows + 1.0), dpi=100)  # 3 in per row, 1 in for title and legend
    present: set[int] = set()
    for row, patch in enumerate(patches):
        raw, codes = _read(folder / patch["image"]), _read(folder / patch["mask"])[0]
        if names is None:
            picture = true_colour(raw[:3], scale)
        else:
            first, picture = band_picture(raw, names, str(manifest.get("dtype", "uint8")))
        colours = scl_rgb(codes).astype(np.float32) / 255.0
        labelled = (codes > 0)[..., None]
        overlay = np.where(labelled, (1 - OVERLAY_ALPHA) * picture + OVERLAY_ALPHA * colours, picture)
        present |= {int(c) for c in np.unique(codes)}
        for col, (title, image) in enumerate(((first, picture), ("SCL", colours), ("Overlay", overlay))):
            ax = fig.add_subplot(rows, 3, row * 3 + col + 1)
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize="medium")
            if col == 0:
                name = _wrap(patch["scene"]) if many else patch["id"]  # a scene's patch ids start with its name
                ax.set_ylabel(f"{name}\n{patch['split']}, {patch['valid_fraction']:.0%} valid", fontsize="small")
    n_train = sum(p["split"] == "train" for p in manifest["patches"])
    n_val = len(manifest["patches"]) - n_train
    fig.suptitle(
        f"{n_train} training and {n_val} validation patches of {manifest['patch_size']} px"
        f"{f' from {n_scenes} scenes' if many else ''} (showing {rows})",
        fontsize="medium",
    )
    height = 3.0 * rows + 1.0
    legend_rows = (len(present) + 3) // 4
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1.0 - 0.65 / height,
        bottom=(0.3 + 0.2 * legend_rows) / height,
        wspace=0.04,
        hspace=0.12,
    )
    scl_legend(fig, present)
    fig.savefig(path)
    return path


def _read(path: Path) -> np.ndarray:
    """A patch decimated to at most SHOWN_PX pixels per side (nearest: SCL codes stay codes)."""
    with rasterio.open(path) as src:
        step = max(1, int(np.ceil(max(src.width, src.height) / SHOWN_PX)))
        return src.read()[:, ::step, ::step]


def _wrap(name: str, width: int = 22) -> str:
    """A long scene name on a few lines, broken after underscores (Sentinel-2 names have no spaces)."""
    return "\n".join(line.replace("_ ", "_") for line in textwrap.wrap(name.replace("_", "_ "), width))
