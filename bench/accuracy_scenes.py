"""Scenes for `make accuracy`: scene list files, or synthetic sample scenes when none are given.

A scene list holds one ``image,scl`` pair a line; ``#`` starts a comment and
relative paths are relative to the list file: the same lists makepatches and
predict's ``--scenes`` read (``model_core/data/scenes.py``).
"""

from __future__ import annotations

from pathlib import Path

from scl_deeplab.model_core.data import scenes
from scl_deeplab.model_core.data.synthetic import make_sample_scene

Scene = tuple[Path, Path]  # (true-colour image, SCL)
SAMPLE_SIZE = 1536  # 3 x 3 windows of Make patches' default 512 px: enough to hold a validation block apart
SAMPLE_SEEDS = {"train": (1, 3), "val": (2,)}


def read_scene_list(path: Path) -> list[Scene]:
    """The (image, scl) pairs of a scene list file, read by model_core's one scene-list parser."""
    return [(scene.image, scene.mask) for scene in scenes.read_scene_list(path)]


def sample_scenes(folder: Path, split: str) -> list[Scene]:
    """Synthetic sample scenes (``samplescene``'s generator), made once in ``folder``."""
    scenes = []
    for seed in SAMPLE_SEEDS[split]:
        image, scl_path = folder / f"sample_{seed}.tif", folder / f"sample_{seed}_scl.tif"
        if not (image.exists() and scl_path.exists()):
            make_sample_scene(image, scl_path, size=SAMPLE_SIZE, seed=seed)
        scenes.append((image, scl_path))
    return scenes
