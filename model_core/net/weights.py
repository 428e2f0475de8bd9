"""Where the starting weights come from: a named weight set on disk, a user's file, or none.

PRETRAINED names one of ``weight_sets.WEIGHT_SETS`` (torchvision's COCO
DeepLabv3, Sentinel-2 ResNet-50 backbones from SatlasPretrain and SSL4EO-S12,
torchvision's ImageNet ResNet-50), "none" (random weights), or "auto" (the
first on disk in ``weight_sets.AUTO_ORDER``, else random). Training never
downloads: a set that is asked for and missing is a ``WeightsNotFoundError``
that names the download algorithm and where to put the file
(``download.py`` fetches it when the user asks).

Every published layout is mapped onto DeepLabv3's ``backbone.`` keys
(``deeplab_keys``), and the set's input normalisation goes with the weights into
the checkpoint. A state dict made for another class count (COCO's 21) loads
everything except the last classifier layers, which start fresh for the 11 SCL
classes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BandCountError, CheckpointError, InputError, WeightsNotFoundError
from ..progress import SILENT, Progress
from . import checkpoint, input_conv, weight_sets
from .weight_sets import CHOICES, IMAGENET_MEAN, IMAGENET_STD, WeightSet, hub_checkpoints

log = logging.getLogger(__name__)

__all__ = [  # CHOICES, the ImageNet statistics and hub_checkpoints are weight_sets', offered here as before
    "CHOICES", "IMAGENET_MEAN", "IMAGENET_STD", "NO_NORMALISATION", "WeightsSource", "check_bands", "coco_file_names",
    "deeplab_keys", "hub_checkpoints", "imagenet_file_names", "initialise", "load_into", "load_weights", "resolve",
]

NO_NORMALISATION = weight_sets.UNIT  # random weights: true colour in 0-1 as it is
# Layers whose shape depends on the class count; a mismatch there is expected, not an error.
FINAL_LAYERS = ("classifier.4.", "aux_classifier.4.")
DOWNLOAD_HINT = (
    "Download it once with Set-up > Download pretrained weights (scldeeplab:downloadweights NAME={name}) or "
    "python -m scl_deeplab.model_core weights download {name}"
)
# SatlasPretrain's own files wrap torchvision's ResNet as ``backbone.[backbone.]resnet.``, beside FPN and heads.
_WRAPPED_RESNET = re.compile(r"^(?:.*\.)?resnet\.")


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's starting weights came from, and the input normalisation they expect."""

    kind: str  # a weight set's name, "none", "file" or "checkpoint"
    file: str | None = None
    mean: tuple[float, float, float] = NO_NORMALISATION[0]
    std: tuple[float, float, float] = NO_NORMALISATION[1]
    skipped: tuple[str, ...] = field(default=())

    def to_meta(self) -> dict[str, Any]:
        """The plain record stored in checkpoints."""
        fresh = sorted({".".join(k.split(".")[:2]) for k in self.skipped})
        return {"kind": self.kind, "file": self.file, "fresh_layers": fresh}


def _names(weights: WeightSet) -> list[str]:
    return [weights.file_name, *weights.other_names]


def coco_file_names() -> list[str]:
    """torchvision's file name for the COCO-with-VOC-labels DeepLabv3-ResNet50 weights."""
    return _names(weight_sets.weight_set("coco"))


def imagenet_file_names() -> list[str]:
    """torchvision's file names for ImageNet ResNet50 weights, preferred first.

    V1 first: torchvision's COCO DeepLabv3 was trained from it.
    """
    return _names(weight_sets.weight_set("imagenet"))


def _not_found(weights: WeightSet) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f'PRETRAINED "{weights.name}" ({weights.title}) needs the file {" or ".join(_names(weights))} in the '
        f"folder {weights.folder}, and it is not there (training never downloads). "
        + DOWNLOAD_HINT.format(name=weights.name)
        + f"; or, offline, copy the file there (it is published at {weights.url}); or set WEIGHTS_FILE to a "
        'weights file you have, or use PRETRAINED "none" to start from random weights.'
    )


def check_bands(weights: WeightSet, bands: int = 3) -> None:
    """``BandCountError`` unless ``weights`` can take the ``bands`` input bands training feeds them.

    True-colour sets serve any band count (widened); a multispectral set needs exactly its bands.
    """
    if weights.bands != 3 and weights.bands != bands:
        raise BandCountError(
            f'PRETRAINED "{weights.name}" ({weights.title}) expects {weights.bands} Sentinel-2 bands ({weights.input}); '
            f"these patches have {bands}. Make patches with those {weights.bands} bands in that order, or choose "
            "satlas-rgb or ssl4eo-rgb (true colour; these, coco and imagenet are widened to any bands that "
            "include B04, B03, B02)."
        )


def resolve(
    pretrained: str = "auto", weights_file: Path | str | None = None, *, progress: Progress = SILENT, bands: int = 3
) -> tuple[str, Path | None]:
    """Which weights to start from: (kind, file) with kind a weight set's name, "file" or "none".

    "auto" with no file on disk warns through ``progress`` how to get them, and gives "none".

    Raises:
        WeightsNotFoundError: a named set asked for and not on disk, or
            ``weights_file`` does not exist.
        BandCountError: the named set expects other bands than the ``bands`` of the patches.
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
    if pretrained != "auto":
        weights = weight_sets.weight_set(pretrained)
        check_bands(weights, bands)
        found = weights.find()
        if found is None:
            raise _not_found(weights)
        return pretrained, found
    best = weight_sets.best_on_disk()
    if best is not None:
        return best.name, best.find()
    progress.warn(
        f"No pretrained weights on disk (looked for {coco_file_names()[0]} and {imagenet_file_names()[0]} in "
        f"{hub_checkpoints()}, and the Sentinel-2 backbones): starting from random weights, which learn much more "
        "slowly. " + DOWNLOAD_HINT.format(name="coco") + ", or set WEIGHTS_FILE."
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


def deeplab_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A published state dict with its keys as DeepLabv3 names them.

    torchvision's DeepLabv3 (COCO) already is; a bare ResNet-50 (torchvision's
    ImageNet file, torchgeo's timm-layout SSL4EO-S12 and SatlasPretrain files) gets
    ``backbone.`` and loses ``fc``; SatlasPretrain's own files keep only what sits
    under ``resnet.`` (their FPN and heads have no place in DeepLabv3).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(re.match(r"^(?:.*\.)?resnet\.conv1\.weight$", k) for k in state):
        bare = {_WRAPPED_RESNET.sub("", k, count=1): v for k, v in state.items() if _WRAPPED_RESNET.match(k)}
        return {f"backbone.{k}": v for k, v in bare.items() if not k.startswith("fc.")}
    if any(k.startswith("backbone.") for k in state):
        return state
    return {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}


def _backbone_name(state: dict[str, torch.Tensor]) -> str:
    """The ResNet a DeepLab-keyed state dict comes from, told by its number of layer3 blocks."""
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("backbone.layer3.") and k.split(".")[2].isdigit()}
    depth = {6: "ResNet50", 23: "ResNet101", 36: "ResNet152"}.get(len(blocks))
    prefix = "DeepLabv3-" if any(k.startswith("classifier.") for k in state) else ""
    return f"{prefix}{depth}" if depth else f"a ResNet with {len(blocks)} blocks in layer3"


def load_into(
    model: nn.Module, path: Path, rgb: Sequence[int] | None = None
) -> tuple[list[str], dict[str, Any] | None]:
    """Copy the tensors of ``path`` into ``model``; returns (keys left fresh, checkpoint meta or None).

    Final classifier layers of another shape are left fresh; any other missing or
    misfitting backbone tensor means the file is not DeepLabv3/ResNet50 weights.
    True-colour weights go into a model reading more bands widened (``input_conv.widen``)
    when ``rgb`` says where red, green and blue sit among its bands.
    """
    raw, meta = _read_state_dict(path)
    state = deeplab_keys(raw)
    own = model.state_dict()
    first = input_conv.FIRST_CONV
    if first in state and first in own and state[first].dim() == 4 and state[first].shape[1] != own[first].shape[1]:
        theirs, mine = state[first].shape[1], own[first].shape[1]
        if theirs != 3 or rgb is None:
            raise BandCountError(
                f"The weights in {path} take {theirs} input bands; this model reads {mine}"
                + (" (true colour)" if mine == 3 else "")
                + ". Choose weights made for true colour (satlas-rgb, ssl4eo-rgb, coco or imagenet)"
                + (", with red, green and blue (B04, B03, B02) among the bands," if mine != 3 else "")
                + f" or weights for {mine} bands, or PRETRAINED none."
            )
        state = {**state, first: input_conv.widen(state[first], mine, rgb)}
        log.info("Widened the true-colour first convolution of %s to %d bands", path, mine)
    fresh = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    bad = [k for k in fresh if not k.startswith(FINAL_LAYERS)]
    # Files saved without BatchNorm's step counters lose nothing: the counters are unused with a momentum.
    missing = [k for k in own if k.startswith("backbone.") and k not in state and not k.endswith("num_batches_tracked")]
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


def _weight_set_of(kind: str, path: Path) -> WeightSet | None:
    """The named set these weights are: by PRETRAINED, or a WEIGHTS_FILE under a published file name."""
    for candidate in weight_sets.WEIGHT_SETS:
        if kind == candidate.name or path.name in _names(candidate):
            return candidate
    return None


def load_weights(model: nn.Module, kind: str, path: Path | None, rgb: Sequence[int] | None = None) -> WeightsSource:
    """Load the weights ``resolve`` chose into ``model``; returns their source and normalisation.

    ``rgb``: where red, green and blue sit among the model's bands, for widening true-colour weights.
    """
    if path is None:
        return WeightsSource("none")
    fresh, meta = load_into(model, path, rgb)
    if kind == "file" and meta is not None:
        spec = checkpoint.input_from_meta(meta, str(path))
        return WeightsSource("checkpoint", str(path), spec.mean, spec.std, tuple(fresh))  # type: ignore[arg-type]
    log.info("Starting weights from %s (%s); fresh: %s", path, kind, ", ".join(fresh) or "nothing")
    chosen = _weight_set_of(kind, path)
    if chosen is not None:
        return WeightsSource(kind, str(path), chosen.mean, chosen.std, tuple(fresh))
    # Any other torchvision state dict: torchvision's ImageNet normalisation.
    return WeightsSource(kind, str(path), IMAGENET_MEAN, IMAGENET_STD, tuple(fresh))
