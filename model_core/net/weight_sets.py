"""The named pretrained weight sets PRETRAINED offers: what each is, where it comes from, where it lives.

Torch-free, so QGIS lists the options and downloads them without PyTorch.

Every set is a ResNet-50 (or a whole DeepLabv3-ResNet50) file published by its
authors or by torchvision/torchgeo. Files whose name carries torch hub's hash
prefix (``name-<first hex digits of the SHA-256>.pth``) live where torch hub keeps
them, ``$TORCH_HOME/hub/checkpoints``, so a copy torchvision or torchgeo already
fetched is found too; any other file lives in the plugin's own weights folder and
has its full SHA-256 pinned here.

``mean`` and ``std`` are on the plugin's model input, true colour in 0-1 (8-bit TCI
/ 255, or reflectance / 0.25 as ESA makes TCI; ``data/radiometry.py``): the network
sees ``(x - mean) / std``. Weights trained on reflectance in 0-1 thus get
``std = 1 / 0.25 = 4``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..data.radiometry import TCI_REFLECTANCE_MAX

WEIGHTS_DIR_ENV = "SCL_DEEPLAB_WEIGHTS_DIR"
BASE_URL_ENV = "SCL_DEEPLAB_WEIGHTS_URL"
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # true colour in 0-1 as it is
REFLECTANCE = ((0.0, 0.0, 0.0), (1.0 / TCI_REFLECTANCE_MAX,) * 3)  # back to reflectance in 0-1


@dataclass(frozen=True)
class WeightSet:
    """One downloadable set of starting weights."""

    name: str  # the PRETRAINED value
    title: str  # what it is, for people
    url: str
    part: str  # "network" (a whole DeepLabv3) or "backbone" (a ResNet-50)
    bands: int  # input bands the first convolution expects
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input: str  # the input the authors trained with
    licence: str
    sha256: str | None = None  # the full hash, for files without torch hub's hash prefix
    other_names: tuple[str, ...] = ()  # further file names that hold the same kind of weights

    @property
    def file_name(self) -> str:
        """The file name, the last part of the URL."""
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str | None:
        """The SHA-256 prefix torch hub's file names carry, if this one does."""
        return hash_prefix_of(self.file_name)

    @property
    def folder(self) -> Path:
        """Where this file is kept: torch hub's cache for hub-named files, else the plugin's weights folder."""
        return hub_checkpoints() if self.hash_prefix else plugin_weights_dir()

    @property
    def path(self) -> Path:
        """Where a download puts the file."""
        return self.folder / self.file_name

    def find(self) -> Path | None:
        """The file on disk (in either folder, under any of its names), or None."""
        for name in (self.file_name, *self.other_names):
            for folder in (self.folder, hub_checkpoints(), plugin_weights_dir()):
                if (folder / name).is_file():
                    return folder / name
        return None

    def source_url(self, base_url: str | None = None) -> str:
        """The download URL; a base URL (a mirror) replaces scheme, host and folder, the file name stays."""
        base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV, "")
        return f"{base.rstrip('/')}/{self.file_name}" if base else self.url

    def describe(self) -> str:
        """One line: name, what it is, and whether it is on disk."""
        found = self.find()
        where = f"on disk ({found})" if found else "not on disk"
        return f"{self.name}: {self.title} [{self.licence}], {where}"


def hash_prefix_of(file_name: str) -> str | None:
    """The SHA-256 prefix in a torch hub file name (``resnet50-0676ba61.pth`` -> ``0676ba61``), or None."""
    match = _HASH_PREFIX.search(file_name)
    return match.group(1) if match else None


def _cache_home() -> Path:
    return Path(os.path.expanduser(os.environ.get("XDG_CACHE_HOME") or "~/.cache"))


def hub_checkpoints() -> Path:
    """torch hub's weights folder, ``$TORCH_HOME/hub/checkpoints`` (torch's own rule, without importing torch)."""
    torch_home = os.environ.get("TORCH_HOME")
    home = Path(os.path.expanduser(torch_home)) if torch_home else _cache_home() / "torch"
    return home / "hub" / "checkpoints"


def plugin_weights_dir() -> Path:
    """The plugin's weights folder for files torch hub does not name: ``$SCL_DEEPLAB_WEIGHTS_DIR`` or the cache."""
    custom = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(os.path.expanduser(custom)) if custom else _cache_home() / "scl_deeplab" / "weights"


_TORCHGEO = "https://hf.co/torchgeo"
WEIGHT_SETS: tuple[WeightSet, ...] = (
    WeightSet(
        "coco",
        "torchvision's DeepLabv3-ResNet50 trained on COCO (VOC classes): backbone and ASPP head, the seed's choice",
        "https://download.pytorch.org/models/deeplabv3_resnet50_coco-cd0a2569.pth",
        "network", 3, IMAGENET_MEAN, IMAGENET_STD, "RGB photos in 0-1, ImageNet mean and std",
        "BSD-3-Clause (torchvision); trained on COCO",
    ),
    WeightSet(
        "satlas-rgb",
        "SatlasPretrain Sentinel-2 ResNet-50, single image, true colour (Allen AI, as torchgeo distributes it)",
        f"{_TORCHGEO}/satlas/resolve/081d6607431bf36bdb59c223777cbb267131b8f2/sentinel2_resnet50_si_rgb-45fc6972.pth",
        "backbone", 3, *UNIT, "Sentinel-2 8-bit TCI / 255, exactly this plugin's input",
        "ODC-BY (Open Data Commons Attribution)",
    ),
    WeightSet(
        "ssl4eo-rgb",
        "SSL4EO-S12 MoCo ResNet-50, Sentinel-2 RGB (TUM/DLR, as torchgeo distributes it)",
        f"{_TORCHGEO}/resnet50_sentinel2_rgb_moco/resolve/efd9723b59a88e9dc1420dc1e96afb25b0630a3c/"
        "resnet50_sentinel2_rgb_moco-2b57ba8b.pth",
        "backbone", 3, *REFLECTANCE, "Sentinel-2 B4, B3, B2 reflectance (digital numbers / 10000)",
        "CC-BY-4.0",
    ),
    WeightSet(
        "ssl4eo-ms",
        "SSL4EO-S12 MoCo ResNet-50, Sentinel-2 all 13 bands (TUM/DLR, as torchgeo distributes it)",
        f"{_TORCHGEO}/resnet50_sentinel2_all_moco/resolve/da4f3c9dbe09272eb902f3b37f46635fa4726879/"
        "resnet50_sentinel2_all_moco-df8b932e.pth",
        "backbone", 13, *REFLECTANCE, "Sentinel-2 L1C, 13 bands B1-B12 with B8A, digital numbers / 10000",
        "CC-BY-4.0",
    ),
    WeightSet(
        "imagenet",
        "torchvision's ResNet-50 trained on ImageNet (V1, from which its COCO DeepLabv3 was trained)",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "backbone", 3, IMAGENET_MEAN, IMAGENET_STD, "RGB photos in 0-1, ImageNet mean and std",
        "BSD-3-Clause (torchvision); trained on ImageNet",
        other_names=("resnet50-11ad3fa6.pth",),  # ImageNet V2
    ),
)
# "auto" takes the first on disk: COCO brings a trained ASPP head too; then backbones trained on Sentinel-2
# true colour (Satlas on TCI itself, SSL4EO on RGB reflectance), then ImageNet photos.
AUTO_ORDER: tuple[str, ...] = ("coco", "satlas-rgb", "ssl4eo-rgb", "imagenet")
NAMES: tuple[str, ...] = tuple(s.name for s in WEIGHT_SETS)
CHOICES: tuple[str, ...] = ("auto", *NAMES, "none")


def weight_set(name: str) -> WeightSet:
    """The weight set called ``name``; ``KeyError`` listing the names when there is none."""
    for candidate in WEIGHT_SETS:
        if candidate.name == name:
            return candidate
    raise KeyError(f'No weight set "{name}"; the names are {", ".join(NAMES)}.')


def on_disk() -> dict[str, Path]:
    """The weight sets found on disk, by name."""
    return {s.name: found for s in WEIGHT_SETS if (found := s.find()) is not None}


def best_on_disk() -> WeightSet | None:
    """The set "auto" would take, or None when none is on disk."""
    for name in AUTO_ORDER:
        if weight_set(name).find():
            return weight_set(name)
    return None


def summary() -> str:
    """Every set for a help text: what it is, its input and licence, and where it is or would go."""
    lines = []
    for s in WEIGHT_SETS:
        found = s.find()
        where = f"on disk: {found}" if found else f"not on disk (goes to {s.folder}/{s.file_name})"
        lines.append(f"- {s.name}: {s.title}. Input: {s.input}. Licence: {s.licence}. {where}.")
    return "\n".join(lines)


def on_disk_label() -> str:
    """A short list of the sets on disk, for a parameter's label."""
    found = [name for name in NAMES if weight_set(name).find()]
    return ", ".join(found) if found else "none"
