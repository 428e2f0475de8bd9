"""Where the starting weights come from: torchvision's files on disk, a user's file, or none.

PRETRAINED picks torchvision's COCO-with-VOC-labels DeepLabv3 weights ("coco",
the seed's choice), its ImageNet ResNet50 backbone ("imagenet"), random weights
("none"), or "auto" (COCO if on disk, else ImageNet if on disk, else random).
Torchvision's files are looked for where torchvision keeps them,
``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), under
torchvision's own file names. Nothing is ever downloaded: a file that is asked
for and missing is a ``WeightsNotFoundError`` that says where to put it.

A state dict made for another class count (COCO's 21) loads everything except the
last classifier layers, which start fresh for the 11 SCL classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InputError, WeightsNotFoundError
from ..progress import SILENT, Progress
from . import checkpoint

log = logging.getLogger(__name__)

CHOICES: tuple[str, ...] = ("auto", "coco", "imagenet", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_NORMALISATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # random weights: true colour in 0-1 as it is
# Layers whose shape depends on the class count; a mismatch there is expected, not an error.
FINAL_LAYERS = ("classifier.4.", "aux_classifier.4.")


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's starting weights came from, and the input normalisation they expect."""

    kind: str  # "coco", "imagenet", "none", "file" or "checkpoint"
    file: str | None = None
    mean: tuple[float, float, float] = NO_NORMALISATION[0]
    std: tuple[float, float, float] = NO_NORMALISATION[1]
    skipped: tuple[str, ...] = field(default=())

    def to_meta(self) -> dict[str, Any]:
        """The plain record stored in checkpoints."""
        fresh = sorted({".".join(k.split(".")[:2]) for k in self.skipped})
        return {"kind": self.kind, "file": self.file, "fresh_layers": fresh}


def hub_checkpoints() -> Path:
    """The folder torchvision keeps downloaded weights in (follows TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _basename(weights_enum: Any) -> str:
    return weights_enum.url.rsplit("/", 1)[-1]


def coco_file_names() -> list[str]:
    """torchvision's file name for the COCO-with-VOC-labels DeepLabv3-ResNet50 weights."""
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights

    return [_basename(DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)]


def imagenet_file_names() -> list[str]:
    """torchvision's file names for ImageNet ResNet50 weights, preferred first.

    V1 first: torchvision's COCO DeepLabv3 was trained from it.
    """
    from torchvision.models import ResNet50_Weights

    return [_basename(ResNet50_Weights.IMAGENET1K_V1), _basename(ResNet50_Weights.IMAGENET1K_V2)]


def _find(names: list[str]) -> Path | None:
    folder = hub_checkpoints()
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _not_found(kind: str, names: list[str]) -> WeightsNotFoundError:
    from torchvision.models import ResNet50_Weights
    from torchvision.models.segmentation import DeepLabV3_ResNet50_Weights

    url = (DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1 if kind == "coco" else ResNet50_Weights.IMAGENET1K_V1).url
    which = " or ".join(names)
    return WeightsNotFoundError(
        f'PRETRAINED "{kind}" needs torchvision\'s file {which} in the folder {hub_checkpoints()}, '
        f"and it is not there (this plugin never downloads). Copy the file there (it is published at {url}), "
        'or set WEIGHTS_FILE to a weights file you have, or use PRETRAINED "none" to start from random weights.'
    )


def resolve(
    pretrained: str = "auto", weights_file: Path | str | None = None, *, progress: Progress = SILENT
) -> tuple[str, Path | None]:
    """Which weights to start from: (kind, file) with kind "coco", "imagenet", "file" or "none".

    "auto" with no file on disk warns through ``progress`` how to get them, and gives "none".

    Raises:
        WeightsNotFoundError: "coco" or "imagenet" asked for and not on disk, or
            ``weights_file`` does not exist.
    """
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsNotFoundError(f"WEIGHTS_FILE {path} does not exist. Choose an existing .pt/.pth file.")
        return "file", path
    pretrained = (pretrained or "auto").lower()
    if pretrained not in CHOICES:
        raise InputError(f'Unknown PRETRAINED "{pretrained}"; use one of {", ".join(CHOICES)}.')
    if pretrained == "none":
        return "none", None
    if pretrained in ("coco", "auto"):
        found = _find(coco_file_names())
        if found:
            return "coco", found
        if pretrained == "coco":
            raise _not_found("coco", coco_file_names())
    found = _find(imagenet_file_names())
    if found:
        return "imagenet", found
    if pretrained == "imagenet":
        raise _not_found("imagenet", imagenet_file_names())
    progress.warn(
        f"No pretrained weights on disk (looked for {coco_file_names()[0]} and {imagenet_file_names()[0]} in "
        f"{hub_checkpoints()}): starting from random weights, which learn much more slowly. Copy torchvision's "
        "files into that folder, or set WEIGHTS_FILE."
    )
    return "none", None


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """A file's tensors and, for one of our checkpoints, its metadata."""
    payload = checkpoint.read_weights_file(
        path, "Choose a torchvision state dict (.pth) or a checkpoint written by Train head as WEIGHTS_FILE."
    )
    if isinstance(payload, dict) and payload.get("format") == checkpoint.FORMAT:
        payload = checkpoint.load_checkpoint(path)
        return payload["state_dict"], payload["meta"]
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]  # torchvision's reference scripts save {"model": ..., "optimizer": ...}
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors. Choose a torchvision .pth file or a checkpoint.")
    return payload, None


def _as_deeplab_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as DeepLabv3 names them: a bare ResNet50 (ImageNet) gets ``backbone.`` and loses ``fc``."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        return state
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def _backbone_name(state: dict[str, torch.Tensor]) -> str:
    """The ResNet a DeepLab-keyed state dict comes from, told by its number of layer3 blocks."""
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("backbone.layer3.") and k.split(".")[2].isdigit()}
    depth = {6: "ResNet50", 23: "ResNet101", 36: "ResNet152"}.get(len(blocks))
    prefix = "DeepLabv3-" if any(k.startswith("classifier.") for k in state) else ""
    return f"{prefix}{depth}" if depth else f"a ResNet with {len(blocks)} blocks in layer3"


def load_into(model: nn.Module, path: Path) -> tuple[list[str], dict[str, Any] | None]:
    """Copy the tensors of ``path`` into ``model``; returns (keys left fresh, checkpoint meta or None).

    Final classifier layers of another shape are left fresh; any other missing or
    misfitting backbone tensor means the file is not DeepLabv3/ResNet50 weights.
    """
    raw, meta = _read_state_dict(path)
    state = _as_deeplab_keys(raw)
    own = model.state_dict()
    fresh = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in fresh if not k.startswith(FINAL_LAYERS)]
    missing = [k for k in own if k.startswith("backbone.") and k not in state]
    if bad or missing:
        example = (bad or missing)[:3]
        raise CheckpointError(
            f"{path} does not hold DeepLabv3-ResNet50 or ResNet50 weights: {len(bad) + len(missing)} backbone tensors "
            f"are missing or of another shape (e.g. {', '.join(example)}). "
            "Choose torchvision's weights or a checkpoint."
        )
    extra = [k for k in state if k.startswith("backbone.") and k not in own]
    if extra:  # a deeper ResNet: loading would drop its extra blocks without a word
        raise CheckpointError(
            f"{path} holds {_backbone_name(state)} weights ({len(extra)} backbone tensors this model has no place "
            f"for, e.g. {', '.join(extra[:2])}); this plugin trains DeepLabv3-ResNet50. "
            "Choose DeepLabv3-ResNet50 or ResNet50 weights, or a checkpoint written by Train head."
        )
    usable = {k: v for k, v in state.items() if k in own and k not in fresh}
    model.load_state_dict(usable, strict=False)
    left = sorted(k for k in own if k not in usable and not k.endswith("num_batches_tracked"))
    return left, meta


def initialise(
    model: nn.Module,
    pretrained: str = "auto",
    weights_file: Path | str | None = None,
    *,
    progress: Progress = SILENT,
) -> WeightsSource:
    """Load the chosen starting weights into ``model`` and say where they came from."""
    return load_weights(model, *resolve(pretrained, weights_file, progress=progress))


def load_weights(model: nn.Module, kind: str, path: Path | None) -> WeightsSource:
    """Load the weights ``resolve`` chose into ``model``; returns their source and normalisation."""
    if path is None:
        return WeightsSource("none")
    fresh, meta = load_into(model, path)
    if kind == "file" and meta is not None:
        source_input = meta.get("input", {})
        mean = tuple(source_input.get("mean", NO_NORMALISATION[0]))
        std = tuple(source_input.get("std", NO_NORMALISATION[1]))
        return WeightsSource("checkpoint", str(path), mean, std, tuple(fresh))  # type: ignore[arg-type]
    log.info("Starting weights from %s (%s); fresh: %s", path, kind, ", ".join(fresh) or "nothing")
    return WeightsSource(kind, str(path), IMAGENET_MEAN, IMAGENET_STD, tuple(fresh))
