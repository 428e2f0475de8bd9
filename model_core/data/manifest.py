"""The patches manifest (``index.json``): the one reader and writer of its format.

Make patches writes it; training, the algorithms and the preview read it. Patch files
are stored relative to the manifest's folder and held here as absolute paths. Version 1
manifests (one scene, named in ``source``) still load: their patches belong to that scene.
Torch-free, so QGIS can read a manifest without PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from .bands import RGB
from .radiometry import input_scale

FORMAT, VERSION = "scl-deeplab-patches", 2
INDEX_NAME = "index.json"
TRAIN, VAL = "train", "val"
Histogram = dict[str, int]  # pixel counts by SCL code, the code as a string key (JSON's only key type)


@dataclass(frozen=True)
class PatchRecord:
    """One patch: its id, image and mask files (absolute), split and the scene it was cut from."""

    id: str
    image: Path
    mask: Path
    split: str
    scene: str = ""
    window: dict[str, int] | None = None  # col_off, row_off, width, height in the scene's pixels
    bounds: tuple[float, float, float, float] | None = None
    valid_fraction: float | None = None
    histogram: Histogram = field(default_factory=dict)

    def to_dict(self, folder: Path) -> dict[str, Any]:
        """The patch's JSON entry, its files relative to ``folder``."""
        out: dict[str, Any] = {"id": self.id, "scene": self.scene, "image": _relative(self.image, folder),
                               "mask": _relative(self.mask, folder), "split": self.split}
        if self.window is not None:
            out["window"] = dict(self.window)
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        if self.valid_fraction is not None:
            out["valid_fraction"] = self.valid_fraction
        out["histogram"] = dict(self.histogram)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path, index: int = 0, scene: str = "") -> PatchRecord:
        """A patch from its JSON entry; ``scene`` names it when the entry does not (version 1)."""
        window = data.get("window")
        bounds = data.get("bounds")
        return cls(
            id=str(data.get("id", index)),
            image=folder / data["image"],
            mask=folder / data["mask"],
            split=str(data.get("split")),
            scene=str(data.get("scene") or scene),
            window={k: int(window[k]) for k in ("col_off", "row_off", "width", "height")} if window else None,
            bounds=tuple(float(v) for v in bounds) if bounds else None,  # type: ignore[arg-type]
            valid_fraction=None if data.get("valid_fraction") is None else float(data["valid_fraction"]),
            histogram={str(k): int(v) for k, v in (data.get("histogram") or {}).items()},
        )


@dataclass(frozen=True)
class SceneRecord:
    """One scene the patches came from, where it went, and what it holds."""

    name: str
    image: str
    mask: str
    split: str = "both"  # "train", "val" or "both" (blocks or random patches of one scene on each side)
    width: int = 0
    height: int = 0
    crs: str | None = None
    train_patches: int = 0
    val_patches: int = 0
    class_histogram: dict[str, Histogram] = field(default_factory=dict)  # train, val and total
    unknown_code_pixels: int = 0  # SCL pixels with codes outside 0-11 made no data (the option to do so was on)

    def to_dict(self) -> dict[str, Any]:
        """The scene's JSON entry."""
        return {"name": self.name, "image": self.image, "mask": self.mask, "split": self.split,
                "width": self.width, "height": self.height, "crs": self.crs, "train_patches": self.train_patches,
                "val_patches": self.val_patches, "class_histogram": self.class_histogram,
                "unknown_code_pixels": self.unknown_code_pixels}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneRecord:
        """A scene from its JSON entry."""
        return cls(
            name=str(data["name"]), image=str(data.get("image", "")), mask=str(data.get("mask", "")),
            split=str(data.get("split", "both")), width=int(data.get("width", 0)), height=int(data.get("height", 0)),
            crs=data.get("crs"), train_patches=int(data.get("train_patches", 0)),
            val_patches=int(data.get("val_patches", 0)),
            class_histogram={k: {c: int(n) for c, n in h.items()} for k, h in (data.get("class_histogram") or {}).items()},
            unknown_code_pixels=int(data.get("unknown_code_pixels", 0)),
        )


@dataclass(frozen=True)
class Manifest:
    """A patches manifest: how the patches were cut, the scenes they came from, and the patches."""

    path: Path  # the index.json; patch files are relative to its folder on disk
    patch_size: int
    dtype: str
    input_scale: float
    patches: tuple[PatchRecord, ...] = ()
    stride: int | None = None
    bands: tuple[int, ...] = (1, 2, 3)
    band_names: tuple[str, ...] = ()  # names of ``bands`` (``bands.band_names``); empty in older manifests
    crs: str | None = None
    split: str = "blocks"
    seed: int = 0
    val_fraction: float = 0.0
    min_valid_fraction: float = 0.0
    class_histogram: dict[str, Histogram] = field(default_factory=dict)
    scenes: tuple[SceneRecord, ...] = ()
    sources: tuple[Path, ...] = ()  # the manifests merged into this one; empty when it was read from one file

    @property
    def input_names(self) -> tuple[str, ...]:
        """The patches' band names; manifests from before multispectral input were red, green, blue."""
        if self.band_names:
            return self.band_names
        return RGB if len(self.bands) == 3 else tuple(f"band {i + 1}" for i in range(len(self.bands)))

    @property
    def train(self) -> tuple[PatchRecord, ...]:
        """The training patches."""
        return tuple(p for p in self.patches if p.split == TRAIN)

    @property
    def val(self) -> tuple[PatchRecord, ...]:
        """The validation patches."""
        return tuple(p for p in self.patches if p.split == VAL)

    @property
    def train_scenes(self) -> list[str]:
        """Names of the scenes with training patches."""
        return [s.name for s in self.scenes if s.train_patches]

    @property
    def val_scenes(self) -> list[str]:
        """Names of the scenes with validation patches."""
        return [s.name for s in self.scenes if s.val_patches]

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON data, patch files relative to the manifest's folder."""
        out: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "patch_size": self.patch_size, "stride": self.stride,
            "bands": list(self.bands), "band_names": list(self.band_names), "dtype": self.dtype,
            "input_scale": float(self.input_scale), "crs": self.crs,
        }
        if len(self.scenes) == 1:  # version 1's one-scene key, still written for readers that know only it
            out["source"] = {"image": self.scenes[0].image, "mask": self.scenes[0].mask}
        out.update({
            "scenes": [s.to_dict() for s in self.scenes], "train_scenes": self.train_scenes,
            "val_scenes": self.val_scenes, "split": self.split, "seed": self.seed, "val_fraction": self.val_fraction,
            "min_valid_fraction": self.min_valid_fraction, "class_histogram": self.class_histogram,
            "patches": [p.to_dict(self.path.parent) for p in self.patches],
        })
        return out

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Manifest:
        """A manifest from JSON data read from ``path``.

        Raises:
            ManifestError: not a patches manifest, a damaged entry, or patches of mixed sizes.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(
                f'{path} is not a patches manifest (no "format": "{FORMAT}"). Choose the index.json Make patches wrote.'
            )
        folder = path.parent
        try:
            scenes = tuple(SceneRecord.from_dict(s) for s in data.get("scenes") or ())
            source = data.get("source")
            if not scenes and isinstance(source, dict) and source.get("image"):
                scenes = (SceneRecord(Path(source["image"]).stem, str(source["image"]), str(source.get("mask", ""))),)
            only = scenes[0].name if len(scenes) == 1 else ""
            patches = tuple(
                PatchRecord.from_dict(p, folder, i, only) for i, p in enumerate(data.get("patches") or ())
            )
            size = int(data.get("patch_size", 0))
            scale = data.get("input_scale")  # written since version 1; derived from dtype for hand-made manifests
            manifest = cls(
                path=path, patch_size=size, dtype=str(data.get("dtype", "uint8")),
                input_scale=float(scale) if scale else input_scale(str(data.get("dtype", "uint8"))),
                patches=patches, stride=data.get("stride"), bands=tuple(int(b) for b in data.get("bands") or (1, 2, 3)),
                band_names=tuple(str(n) for n in data.get("band_names") or ()),
                crs=data.get("crs"), split=str(data.get("split", "blocks")), seed=int(data.get("seed", 0)),
                val_fraction=float(data.get("val_fraction", 0.0)),
                min_valid_fraction=float(data.get("min_valid_fraction", 0.0)),
                class_histogram=data.get("class_histogram") or {}, scenes=scenes,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ManifestError(
                f"The manifest {path} is damaged: a patch entry lacks {exc}. Run Make patches again."
            ) from exc
        sizes = sorted({(p.window["width"], p.window["height"]) for p in patches if p.window})
        if any(s != (size, size) for s in sizes):
            raise ManifestError(
                f"The manifest {path} mixes patch sizes ({', '.join(f'{w}x{h}' for w, h in sizes)}; patch_size says "
                f"{size}). Make all patches with one PATCH_SIZE."
            )
        return manifest

    @classmethod
    def load(cls, path: Path | str) -> Manifest:
        """Read a manifest: ``index.json`` or the folder holding it.

        Raises:
            ManifestError: missing, unreadable, not a manifest, damaged or mixing patch sizes.
        """
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise ManifestError(
                f"Patches manifest {path} does not exist. Run Make patches first and choose its index.json."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path} cannot be read as a patches manifest ({exc}). Run Make patches again.") from exc
        return cls.from_dict(data, path)

    @classmethod
    def merge(cls, manifests: Sequence[Manifest]) -> Manifest:
        """One manifest over the patches and scenes of several (kept at the first one's path).

        Raises:
            ManifestError: none given, or manifests whose patch size, band order or input scaling differ.
        """
        if not manifests:
            raise ManifestError("No patches manifest given. Choose at least one index.json written by Make patches.")
        first = manifests[0]
        for other in manifests[1:]:
            for what, key, fix in (("patch sizes", "patch_size", "one PATCH_SIZE"),
                                   ("band orders", "bands", "the same BANDS"),
                                   ("bands", "input_names", "scenes with the same bands"),
                                   ("data types", "dtype", "scenes of one data type"),
                                   ("input scalings", "input_scale", "scenes of one data type")):
                mine, theirs = getattr(first, key), getattr(other, key)
                if mine != theirs:
                    raise ManifestError(
                        f"The manifests {first.path} and {other.path} have different {what} ({_shown(mine)} and "
                        f"{_shown(theirs)}), so their patches cannot train one model. Make them with {fix}."
                    )
        return replace(
            first,
            patches=tuple(p for m in manifests for p in m.patches),
            scenes=tuple(s for m in manifests for s in m.scenes),
            crs=first.crs if all(m.crs == first.crs for m in manifests) else None,
            class_histogram=_sum_histograms([m.class_histogram for m in manifests]),
            sources=tuple(m.path for m in manifests),
        )

    def save(self, path: Path | str | None = None) -> Path:
        """Write the manifest to ``path`` (default: its own path); patch paths stay relative to ``self.path``."""
        target = Path(path) if path is not None else self.path
        target.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return target


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _sum_histograms(histograms: Sequence[dict[str, Histogram]]) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for histogram in histograms:
        for part, counts in histogram.items():
            into = out.setdefault(part, {})
            for code, n in counts.items():
                into[code] = into.get(code, 0) + int(n)
    return out


def _relative(file: Path, folder: Path) -> str:
    try:
        return file.relative_to(folder).as_posix()
    except ValueError:
        return str(file)
