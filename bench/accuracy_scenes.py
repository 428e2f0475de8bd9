"""Scenes for `make accuracy`: scene list files, or synthetic sample scenes when none are given.

A scene list holds one ``image,scl`` pair a line; ``#`` starts a comment and
relative paths are relative to the list file. This small reader stands in for
the one model_core.data will own for makepatches' scene lists; it refuses what
that one refuses (a missing file, a line that is not a pair).
"""

from __future__ import annotations

from pathlib import Path

from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.errors import InputError

Scene = tuple[Path, Path]  # (true-colour image, SCL)
SAMPLE_SIZE = 768
SAMPLE_SEEDS = {"train": (1, 3), "val": (2,)}


def read_scene_list(path: Path) -> list[Scene]:
    """The (image, scl) pairs of a scene list file."""
    if not path.is_file():
        raise InputError(f"The scene list {path} does not exist.")
    scenes: list[Scene] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"{path}, line {number}: expected 'image,scl', found {text!r}.")
        pair = tuple((path.parent / p).resolve() for p in parts)
        missing = [str(p) for p in pair if not p.is_file()]
        if missing:
            raise InputError(f"{path}, line {number}: {', '.join(missing)} does not exist.")
        scenes.append(pair)  # type: ignore[arg-type]
    if not scenes:
        raise InputError(f"The scene list {path} names no scene.")
    return scenes


def sample_scenes(folder: Path, split: str) -> list[Scene]:
    """Synthetic sample scenes (``samplescene``'s generator), made once in ``folder``."""
    scenes = []
    for seed in SAMPLE_SEEDS[split]:
        image, scl_path = folder / f"sample_{seed}.tif", folder / f"sample_{seed}_scl.tif"
        if not (image.exists() and scl_path.exists()):
            make_sample_scene(image, scl_path, size=SAMPLE_SIZE, seed=seed)
        scenes.append((image, scl_path))
    return scenes
