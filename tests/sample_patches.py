"""Patches made as a user chains the algorithms: samplescene, then makepatches, through Processing."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def sample_patches(root: Path, size: int, seed: int) -> dict[str, Any]:
    """makepatches' outputs for a ``size`` px sample scene: 32 px patches, a quarter for validation."""
    import processing

    scene = processing.run("scldeeplab:samplescene", {
        "SIZE": size, "SEED": seed, "OUTPUT_IMAGE": str(root / "image.tif"), "OUTPUT_SCL": str(root / "scl.tif")})
    return processing.run("scldeeplab:makepatches", {
        "INPUT": scene["OUTPUT_IMAGE"], "MASK": scene["OUTPUT_SCL"], "PATCH_SIZE": 32, "VAL_FRACTION": 0.25,
        "OUTPUT_FOLDER": str(root / "patches")})
