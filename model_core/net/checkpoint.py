"""Model checkpoints: DeepLabv3 weights plus plain metadata, in one ``.pt`` file.

A checkpoint is ``{"format": "scl-deeplab-checkpoint", "version": 1,
"state_dict": {...}, "meta": {...}}`` holding only tensors and plain
dicts, lists, strings and numbers, so ``torch.load(..., weights_only=True)``
opens it. ``meta`` holds:

- ``architecture`` ("deeplabv3_resnet50"), ``num_classes`` (11), ``classes``
  ([{"code": 1, "name": ...}, ...] in class-index order), ``ignored_code`` (0);
- ``input``: bands, band_order (red, green, blue for true colour; Sentinel-2 band names such as
  B04 or B8A, or ``band n``, for multispectral input), dtype, scale, mean, std; the
  network sees ``(clip(raw / scale, 0, 1) - mean) / std``. Written by
  ``input_to_meta`` and read by ``input_from_meta``, nowhere else;
- ``patch_size``, ``aux`` (whether the auxiliary head was trained);
- ``aspp_rates``: ASPP's atrous rates at output stride 8 (``aspp``); checkpoints
  without it have torchvision's standard 12, 24, 36;
- ``stages``: one record per training run (stage, first_epoch, last_epoch,
  learning_rate, batch_size, class_weights, seed, patches, resumed_from, device);
- ``history``: one row per epoch (epoch, stage, train_loss, val_loss,
  pixel_accuracy, mean_iou, kappa, iou (11 values, None where a class is
  absent), learning_rate, seconds);
- ``epoch`` (of these weights), ``best`` (epoch, mean_iou, pixel_accuracy);
- ``weights_source`` (kind: a weight set of ``weight_sets.py``, none, file or checkpoint; file;
  fresh_layers), ``config``, ``versions`` (torch, torchvision), ``saved``.

Training keeps two files: the best epoch (by validation mIoU) at the output
path, and the latest epoch beside it with ``.last`` before the suffix
(``model.pt`` and ``model.last.pt``, see ``last_path``). Both are written
atomically, so a failed or canceled write leaves the previous file intact.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

import torch

from .. import scl
from ..atomic import atomic_file
from ..errors import CheckpointError
from . import aspp, input_conv, pixel_head
from .model import ARCHITECTURE, build_model
from .model_input import RGB, ModelInput, input_from_meta, input_to_meta  # noqa: F401 - the checkpoint's input pair

FORMAT = "scl-deeplab-checkpoint"
VERSION = 1
def class_table() -> list[dict[str, Any]]:
    """The learned classes as stored in checkpoints: code and name, in class-index order."""
    return [{"code": c.code, "name": c.name} for c in scl.LEARNED]


def last_path(path: Path | str) -> Path:
    """Where the latest epoch's checkpoint lives beside the best one: ``a/model.pt`` -> ``a/model.last.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.last{path.suffix or '.pt'}")


def versions() -> dict[str, str]:
    """The library versions a checkpoint records."""
    import torchvision

    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


def plain(value: Any, where: str = "meta") -> Any:
    """``value`` as plain Python (dict, list, str, int, float, bool, None) that ``weights_only`` loading accepts.

    Numpy scalars and arrays become numbers and lists; anything else raises ``TypeError``.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist(), where)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(f"Checkpoint metadata {where} is a {type(value).__name__}; only plain values can be stored.")


def save_checkpoint(path: Path | str, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write weights and metadata to ``path`` atomically.

    ``meta`` must hold plain values only. Architecture, class table, versions and
    the time of writing are filled in where ``meta`` does not give them.
    """
    meta = dict(meta)
    meta.setdefault("architecture", ARCHITECTURE)
    meta.setdefault("num_classes", scl.NUM_CLASSES)
    meta.setdefault("classes", class_table())
    meta.setdefault("ignored_code", scl.NO_DATA)
    meta.setdefault("versions", versions())
    meta["saved"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    cpu_state = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    payload = {"format": FORMAT, "version": VERSION, "state_dict": cpu_state, "meta": plain(meta)}
    # Through a Python file, so a full disk surfaces as ENOSPC (atomic_file says so), not torch's "unexpected pos".
    with atomic_file(path) as tmp, open(tmp, "wb") as file:
        torch.save(payload, file)


def read_weights_file(path: Path, advice: str) -> Any:
    """``torch.load`` of tensors and plain values only (``weights_only``), on the CPU.

    Raises:
        CheckpointError: the file cannot be read that way; ``advice`` ends the message.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - junk makes torch.load raise any kind; the cause stays chained
        if "Weights only load failed" in str(exc):
            # torch's own text goes on to suggest weights_only=False: that would run whatever the file holds.
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
            raise CheckpointError(
                f"{path} is not an SCL DeepLab checkpoint or PyTorch weights file: it holds code or Python objects "
                f"that are not tensors{f' ({found.group(1)})' if found else ''} and will not be loaded, since "
                f"opening it could run that code. {advice}"
            ) from exc
        raise CheckpointError(
            f"{path} is not an SCL DeepLab checkpoint or PyTorch weights file (it cannot be read as tensors: "
            f"{_first_line(exc)}). {advice}"
        ) from exc


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Open and validate a checkpoint; returns ``{"format", "version", "state_dict", "meta"}``.

    Raises:
        CheckpointError: the file is missing, is not an SCL DeepLab checkpoint, was
            written by a newer version of the plugin, or has another class table.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model checkpoint {path} does not exist. Choose a .pt file written by Train head.")
    payload = read_weights_file(path, "Choose a .pt file written by Train head.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not an SCL DeepLab checkpoint. Choose a .pt file written by Train head "
            "(to start from other weights, use WEIGHTS_FILE instead)."
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version}, newer than this plugin reads ({VERSION}). Update SCL DeepLab."
        )
    meta = payload.get("meta")
    if not isinstance(meta, dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"{path} is damaged: it lacks its weights or metadata. Retrain, or use another file.")
    _check_classes(path, meta)
    return payload


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _check_classes(path: Path, meta: dict[str, Any]) -> None:
    classes = meta.get("classes")
    codes = [c.get("code") for c in classes] if isinstance(classes, list) else []
    if codes != scl.learned_codes():
        raise CheckpointError(
            f"Checkpoint {path} was trained for {len(codes)} classes (codes {codes}), this plugin expects "
            f"{scl.NUM_CLASSES} (SCL codes 1-{scl.MAX_CODE}). Retrain with the current version."
        )
    architecture = meta.get("architecture")
    if architecture != ARCHITECTURE:
        raise CheckpointError(
            f"Checkpoint {path} holds a {architecture} network; this plugin runs {ARCHITECTURE} only."
        )


def load_model(path: Path | str, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The checkpoint's DeepLabv3 in eval mode on ``device``, and its metadata.

    The auxiliary head, if the checkpoint has one, is left out: prediction does not use it.
    ASPP gets the rates the model was trained with (``meta["aspp_rates"]``).
    """
    payload = load_checkpoint(path)
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("aux_classifier.")}
    model = build_model(aux=False, initialise=False, aspp_rates=aspp.read_rates(payload["meta"]),
                        pixel_bands=pixel_head.in_state(state))
    first = state.get(input_conv.FIRST_CONV)
    if isinstance(first, torch.Tensor) and first.dim() == 4:
        input_conv.set_input_bands(model, int(first.shape[1]))  # multispectral models read more than 3 bands
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"The weights in {path} do not fit DeepLabv3-ResNet50 with {scl.NUM_CLASSES} classes: "
            f"{_first_line(exc)}. Retrain, or use another file."
        ) from exc
    model.to(device).eval()
    return model, payload["meta"]
