"""Cut scenes and their SCLs into training patches, with a manifest (``index.json``).

Every scene is checked before anything is written (``scene_checks``), then read window
by window, never whole. Each SCL is seen on its image's grid (nearest neighbour, so codes
stay codes) whatever its own resolution or CRS. Patches are split into training and
validation within each scene (spatial blocks or random) or by whole scenes. Every file
goes into a temporary folder that becomes the output folder only when complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from .. import scl
from ..atomic import atomic_folder, check_replaceable
from ..errors import InputError
from ..net import aspp
from ..progress import SILENT, Progress, SubProgress, check_canceled
from ..sizing import check_size
from .bands import is_true_colour, parse_bands  # noqa: F401 - parse_bands is offered here as before
from .cutting import cut_scene
from .manifest import FORMAT, INDEX_NAME, Manifest, PatchRecord, SceneRecord
from .radiometry import input_scale
from .scene_checks import SceneInfo, check_fits, inspect_scenes
from .scenes import Scene
from .windows import DROPPED, TRAIN, VAL, Split, split_scenes, split_windows

PREVIEW_NAME = "preview.png"


@dataclass(frozen=True)
class PatchConfig:
    """How to cut patches; ``stride_px=None`` means the patch size (no overlap).

    ``split="scenes"`` validates on whole scenes: those named in ``val_scenes``, else a
    ``val_fraction`` of the scenes. ``unknown_codes_as_no_data`` turns SCL values outside
    0-11 into no data (0) instead of refusing the mask.
    """

    patch_size_px: int = 512
    stride_px: int | None = None
    bands: tuple[int, ...] = (1, 2, 3)
    min_valid_fraction: float = 0.5
    val_fraction: float = 0.2
    split: Split = "blocks"
    seed: int = 0
    overwrite: bool = False
    preview_patches: int = 4
    val_scenes: tuple[str, ...] = ()
    unknown_codes_as_no_data: bool = False

    @property
    def stride(self) -> int:
        """The stride in pixels."""
        return self.patch_size_px if self.stride_px is None else self.stride_px


@dataclass(frozen=True)
class PatchResult:
    """What ``make_patches`` wrote and how many patches went where."""

    index: Path
    preview: Path
    train_count: int
    val_count: int
    tried: int
    dropped: int  # training patches left out because they overlapped validation patches
    class_histogram: dict[str, dict[str, int]] = field(default_factory=dict)
    train_scenes: tuple[str, ...] = ()
    val_scenes: tuple[str, ...] = ()
    scene_histograms: dict[str, dict[str, int]] = field(default_factory=dict)  # scene name -> total by code


def parse_names(text: str) -> tuple[str, ...]:
    """``"a, b;c"`` -> ("a", "b", "c"): scene names from a comma- or semicolon-separated text."""
    return tuple(dict.fromkeys(p.strip() for p in re.split(r"[,;\n]", str(text or "")) if p.strip()))


def check_settings(config: PatchConfig) -> None:
    """Refuse settings that cannot give patches of any scene."""
    size = config.patch_size_px
    check_size(size, "patch size")
    if config.stride <= 0:
        raise InputError(
            f"The stride must be a positive number of pixels, not {config.stride}; "
            f"use the patch size ({size}) for patches side by side, or less for overlapping ones."
        )
    if not 0.0 <= config.min_valid_fraction <= 1.0:
        raise InputError(f"The minimum valid fraction must be between 0 and 1, not {config.min_valid_fraction}.")
    if not 0.0 <= config.val_fraction < 1.0:
        raise InputError(f"The validation fraction must be at least 0 and below 1, not {config.val_fraction}.")
    if config.val_scenes and config.split != "scenes":
        raise InputError(
            f"Validation scenes ({', '.join(config.val_scenes)}) are named but the split is {config.split!r}; "
            "choose the split by whole scenes, or leave the names empty."
        )


def check_config(config: PatchConfig, width: int, height: int) -> None:
    """Refuse settings that cannot give patches of this ``width`` x ``height`` scene."""
    check_settings(config)
    check_fits(config.patch_size_px, width, height)


@overload
def make_patches(
    scenes: Sequence[Scene], out_dir: Path | str, config: PatchConfig, *, progress: Progress = SILENT
) -> PatchResult: ...


@overload
def make_patches(
    scenes: Path | str, mask: Path | str, out_dir: Path | str, config: PatchConfig, *, progress: Progress = SILENT
) -> PatchResult: ...


def make_patches(scenes, *args, progress: Progress = SILENT) -> PatchResult:
    """Write image and SCL patch GeoTIFFs, ``index.json`` and ``preview.png`` into ``out_dir``.

    Call it with scenes, ``make_patches(scenes, out_dir, config)``, or with one pair,
    ``make_patches(image, mask, out_dir, config)``.

    Raises:
        InputError: bad settings, a mask with codes outside 0-11, no patch with enough valid pixels,
            an empty validation set in a split by scenes, or (several scenes) scenes that cannot be used,
            each named with its reason.
        BandCountError, GridError, RasterReadError: unusable inputs (one scene).
        OutputError: ``out_dir`` is not empty (and ``config.overwrite`` is off) or cannot be written.
        Canceled: the user stopped; ``out_dir`` is left as it was.
    """
    if isinstance(scenes, (str, Path)):
        mask, out_dir, config = args
        scenes = [Scene(Path(scenes).resolve(), Path(mask).resolve())]
    else:
        out_dir, config = args
        scenes = [Scene(Path(s.image).resolve(), Path(s.mask).resolve(), s.name) for s in scenes]
    if not scenes:
        raise InputError("No scenes given. Give at least one image and its SCL.")
    if len({s.name for s in scenes}) < len(scenes):
        raise InputError("Two scenes share a name; give each scene its own name.")
    return _make(scenes, Path(out_dir), config, progress)


def _make(scenes: list[Scene], out_dir: Path, config: PatchConfig, progress: Progress) -> PatchResult:
    from ..evaluation.preview import write_preview  # matplotlib is only needed at the end

    check_settings(config)
    if config.overwrite:
        inputs = tuple(path for s in scenes for path in (s.image, s.mask))
        check_replaceable(out_dir, marker=INDEX_NAME, is_ours=_is_patches_index, inputs=inputs,
                          own=(INDEX_NAME, PREVIEW_NAME, "images", "masks"))
    names = [s.name for s in scenes]
    sides = (split_scenes(names, val_names=config.val_scenes, val_fraction=config.val_fraction, seed=config.seed)
             if config.split == "scenes" else None)
    infos = inspect_scenes(scenes, config.bands, config.patch_size_px, config.unknown_codes_as_no_data,
                           progress=SubProgress(progress, 0, 5))
    read = infos[0].band_names  # scene_checks made sure every scene has these bands
    dtype, scale = infos[0].dtype, input_scale(infos[0].dtype, multispectral=not is_true_colour(read))
    for info in infos:
        if info.unknown_codes:
            codes, n = ", ".join(str(c) for c in info.unknown_codes), info.unknown_pixels
            progress.info(f"{info.scene.name}: {n} SCL pixel{'s' if n != 1 else ''} with codes {codes} (not SCL "
                          "codes 0-11) are treated as no data.")
    records: list[dict[str, Any]] = []
    tried, best = 0, 0.0
    with atomic_folder(out_dir, overwrite=config.overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, (info, prefix) in enumerate(zip(infos, _prefixes(names))):
            part = SubProgress(progress, 5 + 85 * i / len(infos), 5 + 85 * (i + 1) / len(infos))
            found, n_windows, scene_best = cut_scene(
                info, tmp, bands=config.bands, patch_size_px=config.patch_size_px, stride_px=config.stride,
                min_valid_fraction=config.min_valid_fraction, dtype=dtype, prefix=prefix, progress=part,
                names=read)
            tried, best = tried + n_windows, max(best, scene_best)
            if found:
                side = sides[i] if sides else None
                records += _split(found, config, side, seed=config.seed + i)
        for record in records:
            if record["split"] == DROPPED:
                (tmp / record["image"]).unlink()
                (tmp / record["mask"]).unlink()
        kept = [r for r in records if r["split"] != DROPPED]
        _check_found(kept, infos, sides, tried, best, config)
        manifest = _manifest(out_dir / INDEX_NAME, infos, sides, kept, dtype, scale, config)
        manifest.save(tmp / INDEX_NAME)
        n_train, n_val = len(manifest.train), len(manifest.val)
        _report(progress, manifest, tried, len(records), len(records) - len(kept), config)
        check_canceled(progress)
        write_preview(tmp, manifest.to_dict(), tmp / PREVIEW_NAME, count=config.preview_patches, seed=config.seed)
    progress.set_progress(100)
    return PatchResult(
        out_dir / INDEX_NAME, out_dir / PREVIEW_NAME, n_train, n_val, tried, len(records) - len(kept),
        manifest.class_histogram, tuple(manifest.train_scenes), tuple(manifest.val_scenes),
        {s.name: s.class_histogram.get("total", {}) for s in manifest.scenes},
    )


def _is_patches_index(path: Path) -> bool:
    """True when ``path`` is an index this module wrote."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _split(records: list[dict[str, Any]], config: PatchConfig, side: str | None, seed: int) -> list[dict[str, Any]]:
    """One scene's records with their side: all on ``side`` (split by scenes), else blocks or random patches."""
    if side is not None:
        labels = [side] * len(records)
    else:
        labels = split_windows([r["window"] for r in records], split=config.split,
                               val_fraction=config.val_fraction, seed=seed, patch_size_px=config.patch_size_px)
    return [{**r, "split": label} for r, label in zip(records, labels)]


def _check_found(kept, infos, sides, tried: int, best: float, config: PatchConfig) -> None:
    """Refuse a dataset without patches, or a split by scenes with an empty side."""
    if not kept:
        raise InputError(
            f"None of the {tried} patches has at least {config.min_valid_fraction:.0%} valid SCL "
            f"pixels (non-zero codes); the best has {best:.1%}. Lower the minimum valid fraction, or check "
            f"that the mask is the SCL of {'this scene' if len(infos) == 1 else 'each scene'}."
        )
    if sides is None:
        return
    for side, which in ((VAL, "validation"), (TRAIN, "training")):
        named = [info.scene.name for info, s in zip(infos, sides) if s == side]
        if not any(r["split"] == side for r in kept):
            raise InputError(
                f"The {which} set is empty: the {which} scenes ({', '.join(named)}) gave no patch with at least "
                f"{config.min_valid_fraction:.0%} valid SCL pixels. Choose other {which} scenes, or lower the "
                "minimum valid fraction."
            )


def _class_histogram(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Pixel counts by SCL code (all codes 0-11 as string keys) for train, val and total."""
    out = {}
    for part in (TRAIN, VAL, "total"):
        counts = np.zeros(scl.MAX_CODE + 1, dtype=np.int64)
        for r in records:
            if part == "total" or r["split"] == part:
                for code, n in r["histogram"].items():
                    counts[int(code)] += n
        out[part] = {str(c): int(n) for c, n in enumerate(counts)}
    return out


def _manifest(path: Path, infos: list[SceneInfo], sides: list[str] | None, kept: list[dict[str, Any]], dtype: str,
              scale: float, config: PatchConfig) -> Manifest:
    folder = path.parent
    patches = tuple(
        PatchRecord(
            id=r["id"], image=folder / r["image"], mask=folder / r["mask"], split=r["split"], scene=r["scene"],
            window={"col_off": int(r["window"].col_off), "row_off": int(r["window"].row_off),
                    "width": int(r["window"].width), "height": int(r["window"].height)},
            bounds=r["bounds"], valid_fraction=r["valid_fraction"], histogram=r["histogram"],
        )
        for r in kept
    )
    scenes = []
    for i, info in enumerate(infos):
        mine = [r for r in kept if r["scene"] == info.scene.name]
        n_train = sum(r["split"] == TRAIN for r in mine)
        scenes.append(SceneRecord(
            name=info.scene.name, image=str(info.scene.image), mask=str(info.scene.mask),
            split=sides[i] if sides else "both", width=info.width, height=info.height, crs=info.crs,
            train_patches=n_train, val_patches=len(mine) - n_train, class_histogram=_class_histogram(mine),
            unknown_code_pixels=info.unknown_pixels,
        ))
    crs = {info.crs for info in infos}
    return Manifest(
        path=path, patch_size=config.patch_size_px, dtype=dtype, input_scale=float(scale), patches=patches,
        stride=config.stride, bands=tuple(config.bands), band_names=infos[0].band_names,
        crs=crs.pop() if len(crs) == 1 else None, split=config.split,
        seed=config.seed, val_fraction=config.val_fraction, min_valid_fraction=config.min_valid_fraction,
        class_histogram=_class_histogram(kept), scenes=tuple(scenes),
    )


def _report(progress: Progress, manifest: Manifest, tried: int, passed: int, dropped: int, config) -> None:
    n_train, n_val = len(manifest.train), len(manifest.val)
    progress.info(
        f"{passed} of {tried} patches have at least {config.min_valid_fraction:.0%} valid SCL pixels: "
        f"{n_train} for training, {n_val} for validation."
    )
    if dropped:
        progress.info(f"{dropped} training patches overlapping validation patches were left out.")
    if len(manifest.scenes) > 1:
        for scene in manifest.scenes:
            progress.info(f"{scene.name}: {scene.train_patches} training and {scene.val_patches} validation patches.")
            if not scene.train_patches + scene.val_patches:
                progress.warn(f"{scene.name} gave no patch with at least {config.min_valid_fraction:.0%} valid SCL "
                              "pixels; it adds nothing to the dataset.")
        progress.info(f"Training scenes: {', '.join(manifest.train_scenes) or 'none'}.")
        progress.info(f"Validation scenes: {', '.join(manifest.val_scenes) or 'none'}.")
    if config.val_fraction > 0 and n_val == 0:
        others = "" if len(manifest.scenes) < 2 or config.split == "scenes" else ", or SPLIT scenes"
        progress.warn(
            f"Too few patches to set some aside for validation; all of them are for training, and training will "
            f"refuse them. Use a smaller PATCH_SIZE than {config.patch_size_px} px (more, smaller patches; training "
            f"from random weights crops them to 128 px anyway){others}."
        )
    if note := aspp.small_patch_note(config.patch_size_px):
        progress.info(note)


def _prefixes(names: list[str]) -> list[str]:
    """Patch file name prefixes: none for one scene, else each scene's name made safe for a file name."""
    if len(names) == 1:
        return [""]
    out: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"
        safe, n = base, 1
        while f"{safe}_" in out:
            n += 1
            safe = f"{base}_{n}"
        out.append(f"{safe}_")
    return out
