"""Scenes to learn from: image + SCL pairs from a list file, a folder or a naming rule.

A list file holds one entry a line; blank lines and ``#`` comments are skipped and
relative paths are taken from the file's folder (the rules of predict's ``--scenes``,
which reads its lists with the same ``list_entries``). A scene list's entry is
``image,scl``. A folder written by Download L2A is read through its ``manifest.json``;
any other folder pairs each raster with its SCL by the naming rule of ``find_mask``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2")
DOWNLOAD_MANIFEST, DOWNLOAD_FORMAT = "manifest.json", "scl-deeplab-l2a-download"
# The true-colour part of a file name, replaced by "SCL" to name its mask: T29UNU_TCI_60m -> T29UNU_SCL_60m,
# x_BANDS_20m, x_RGB_B04B03B02_120m, x_RGB432B_10, x_BOA_10, train_scene -> train_scl, image -> scl.
_TRUE_COLOUR = re.compile(
    r"(?<![A-Za-z0-9])(TCI|BANDS|BOA|RGB[A-Za-z0-9]*(?:_B\d[A-Za-z0-9]*)?|scene|image)(?![A-Za-z0-9])", re.IGNORECASE
)
_SCL_NAME = re.compile(r"(?<![A-Za-z0-9])SCL(?![A-Za-z0-9])", re.IGNORECASE)
NAMING_RULE = (
    "its SCL is the file in the same folder named like it with its true-colour part (TCI, BANDS, BOA, RGB..., "
    "scene or image) replaced by SCL or scl, or with _SCL or _scl added: T29UNU_TCI_60m.tif -> T29UNU_SCL_60m.tif, "
    "train_scene.tif -> train_scl.tif, x.tif -> x_SCL.tif"
)


@dataclass(frozen=True)
class Scene:
    """A true-colour image and its SCL; ``name`` (default: the image's file name without suffix) labels it."""

    image: Path
    mask: Path
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "mask", Path(self.mask))
        if not self.name:
            object.__setattr__(self, "name", self.image.stem)


def list_entries(source: Path | str) -> list[tuple[int, str]]:
    """(line number, text) of each entry of a list file: blank lines and ``#`` comments skipped."""
    source = Path(source)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the list {source}: {exc}.") from exc
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]


def listed_path(source: Path | str, text: str) -> Path:
    """A path written in the list file ``source``: ``~`` expanded, relative ones from the file's folder."""
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else Path(source).expanduser().parent / path


def read_scene_list(source: Path | str) -> list[Scene]:
    """Scenes from a list file of ``image,scl`` lines.

    Raises:
        InputError: the file is missing or lists nothing, a line is not a pair, or a listed file is missing
            (every such line is named).
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise InputError(f"The scene list {source} does not exist. Give a text file with one image,scl pair a line.")
    scenes, problems = [], []
    for number, text in list_entries(source):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            problems.append(f"line {number} ({text!r}) is not an image,scl pair")
            continue
        image, mask = (listed_path(source, p) for p in parts)
        missing = [str(p) for p in (image, mask) if not p.exists()]
        if missing:
            problems.append(f"line {number}: {' and '.join(missing)} {'does' if len(missing) == 1 else 'do'} not exist")
            continue
        scenes.append(Scene(image.resolve(), mask.resolve()))
    if problems:
        raise InputError(f"The scene list {source}: {'; '.join(problems)}. Fix these lines (paths are relative to "
                         "the list's folder).")
    if not scenes:
        raise InputError(f"The scene list {source} lists no scenes. Add one image,scl pair a line.")
    return unique_names(scenes)


def find_mask(image: Path | str) -> Path | None:
    """The SCL of ``image`` by the naming rule (see ``NAMING_RULE``), or None when no such file exists."""
    image = Path(image)
    stems = []
    for match in reversed(list(_TRUE_COLOUR.finditer(image.stem))):
        for word in ("SCL", "scl"):
            stems.append(image.stem[: match.start()] + word + image.stem[match.end():])
    stems += [image.stem + "_SCL", image.stem + "_scl"]
    for stem in stems:
        for suffix in dict.fromkeys((image.suffix, *RASTER_SUFFIXES)):
            candidate = image.with_name(stem + suffix)
            if candidate != image and candidate.is_file():
                return candidate
    return None


def scenes_from_images(images: Iterable[Path | str]) -> list[Scene]:
    """Pair each image with its SCL by the naming rule; an image that is another one's SCL is left out.

    Raises:
        InputError: no image given, or images without an SCL (all named).
    """
    paths = list(dict.fromkeys(Path(p).resolve() for p in images))
    masks = {p: find_mask(p) for p in paths}
    found = {m.resolve() for m in masks.values() if m is not None}
    # A whole folder's rasters include the SCLs themselves (and an unpaired 20 m SCL beside a 60 m one).
    images_only = [p for p in paths if p not in found and not (masks[p] is None and _SCL_NAME.search(p.stem))]
    orphans = [p.name for p in images_only if masks[p] is None]
    if orphans:
        raise InputError(
            f"No SCL found for {', '.join(orphans)}: {NAMING_RULE}. Rename the SCL files, or give a scene list."
        )
    if not images_only:
        raise InputError("No scenes given. Choose true-colour images whose SCL files lie beside them.")
    return unique_names([Scene(p, masks[p].resolve()) for p in images_only])  # type: ignore[union-attr]


def scenes_in_folder(folder: Path | str) -> list[Scene]:
    """The scenes of a folder: from Download L2A's ``manifest.json``, else its rasters paired by name.

    Raises:
        InputError: no scenes, a manifest naming missing files, or rasters without an SCL.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"The scene folder {folder} does not exist.")
    manifest = folder / DOWNLOAD_MANIFEST
    if manifest.is_file():
        return _downloaded(manifest)
    rasters = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES and not p.name.startswith("."))
    if not rasters:
        raise InputError(f"The folder {folder} holds no {'/'.join(RASTER_SUFFIXES)} rasters and no "
                         f"{DOWNLOAD_MANIFEST}. Choose the folder Download L2A or Prepare L2A wrote into.")
    return scenes_from_images(rasters)


def load_scenes(source: Path | str) -> list[Scene]:
    """Scenes from a folder (``scenes_in_folder``) or a scene list file (``read_scene_list``)."""
    source = Path(source).expanduser()
    return scenes_in_folder(source) if source.is_dir() else read_scene_list(source)


def unique_names(scenes: Sequence[Scene]) -> list[Scene]:
    """The scenes, renamed ``<folder>_<name>`` (then ``_2``, ``_3``...) where two share a name."""
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s.name] = counts.get(s.name, 0) + 1
    out: list[Scene] = []
    taken: set[str] = set()
    for s in scenes:
        name = s.name if counts[s.name] == 1 else f"{s.image.parent.name}_{s.name}"
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        out.append(Scene(s.image, s.mask, name))
    return out


def _downloaded(manifest: Path) -> list[Scene]:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        items = data["items"] if data.get("format") == DOWNLOAD_FORMAT else None
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputError(f"{manifest} cannot be read ({exc}). Run Download L2A into this folder again.") from exc
    if items is None:
        raise InputError(f"{manifest} is not a Download L2A manifest. Choose the folder Download L2A wrote.")
    scenes, missing = [], []
    for item in items:
        image, mask = manifest.parent / str(item.get("image", "")), manifest.parent / str(item.get("scl", ""))
        missing += [p.name for p in (image, mask) if not p.is_file()]
        scenes.append(Scene(image.resolve(), mask.resolve(), str(item.get("id") or image.stem)))
    if missing:
        raise InputError(f"{manifest} lists files that are missing: {', '.join(missing)}. Run Download L2A into "
                         "this folder again to complete it.")
    if not scenes:
        raise InputError(f"{manifest} lists no scenes: the search found nothing. Widen the dates or the extent.")
    return unique_names(scenes)
