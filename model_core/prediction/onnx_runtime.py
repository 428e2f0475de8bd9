"""ONNX models predicting tiles through ONNX Runtime: prediction without PyTorch.

``OnnxModel`` is a ``predict.TileModel``: ``predict_scene`` runs it with the same
tiling, blending, no-data, confidence and styling as a torch model. Its outputs
(probabilities, or logits that get a softmax here) are put in the SCL class slots
their codes name, so a model with fewer classes still writes SCL codes.

Sessions are cached per process, keyed by path, modification time and providers,
like torch checkpoints in ``predict.cached_model``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import scl
from ..errors import CheckpointError, DeviceError, SclDeepLabError
from ..net.model_input import ModelInput
from ..progress import SILENT, Progress
from .onnx_metadata import OnnxModelInfo, read_info
from .tile_choice import tiles_per_run

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install onnxruntime"


class OnnxRuntimeMissing(SclDeepLabError, ModuleNotFoundError):
    """onnxruntime cannot be imported in this Python."""


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module; ``OnnxRuntimeMissing`` naming the install command when it is missing."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxRuntimeMissing(
            "ONNX Runtime is not installed in this Python, so .onnx models cannot run. Install it with "
            f"`{INSTALL_HINT}` for the Python that QGIS uses (python -m pip install onnxruntime), then restart QGIS.",
            name="onnxruntime",
        ) from exc
    return onnxruntime


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for DEVICE: CUDA first where installed and asked for (auto or cuda)."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    device = (device or "auto").strip().lower()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise DeviceError(
            f"DEVICE is {device}, but this ONNX Runtime has no CUDA provider (it has {', '.join(available)}). "
            "Install onnxruntime-gpu, or use DEVICE cpu or auto."
        )
    if device in ("auto",) or device.startswith("cuda"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxModel:
    """An ONNX segmentation model in an ``onnxruntime.InferenceSession``, with what its metadata says."""

    def __init__(self, path: Path | str, device: str = "auto") -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        # ALL adds the NCHWc layout for float convolutions: int8 tiles ran 1.4x faster than with EXTENDED.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: beside QGIS and other work on the cores, spinning
        # threads take time from the ones computing (int8 tiles 11 % slower on the shared 2-core bench CPU).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:  # the same thread budget torch would get
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers_for(device))
        except SclDeepLabError:
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own kinds for junk files; chained
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{self.path} is not an ONNX model that ONNX Runtime can load ({first}). Choose a .onnx file "
                "written by Export model to ONNX."
            ) from exc
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not outputs or len(outputs[0].shape) != 4:
            shapes = [i.shape for i in inputs] + [o.shape for o in outputs]
            raise CheckpointError(
                f"{self.path} is not a segmentation model: it should take one (batch, bands, height, width) input "
                f"and return (batch, classes, height, width), but its inputs and outputs are {shapes}."
            )
        self.input_name = inputs[0].name
        self.fixed_batch = _fixed(inputs[0].shape[0])
        self.fixed_size = tuple(_fixed(d) for d in inputs[0].shape[2:])  # (height, width); None where dynamic
        self.output_name = outputs[0].name
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info: OnnxModelInfo = read_info(
            props, channels=_fixed(inputs[0].shape[1]), outputs=_fixed(outputs[0].shape[1]), source=str(self.path)
        )
        self.providers = tuple(self.session.get_providers())

    @property
    def meta(self) -> dict[str, Any]:
        """The checkpoint-style metadata ``predict_scene`` reads: ``input``, and for its default tiles the patch
        size and ASPP rates of training (our exports) and the tile size the file asks for (a fixed input size,
        or its metadata's)."""
        spec = self.info.spec
        meta: dict[str, Any] = {"input": {"bands": len(spec.band_order), "band_order": list(spec.band_order),
                                          "dtype": spec.dtype, "scale": spec.scale, "mean": list(spec.mean),
                                          "std": list(spec.std)}}
        if self.info.patch_size:
            meta["patch_size"] = self.info.patch_size
        if self.info.aspp_rates:
            meta["aspp_rates"] = list(self.info.aspp_rates)
        height, width = self.fixed_size
        tile = height if height is not None and height == width else self.info.tile_size_px
        if tile:
            meta["tile_size_px"] = tile
        return meta

    def tiles_per_batch(self, batch_size: int, tile_size_px: int) -> int:
        """``batch_size``, or for 0 as torch: one 512 px tile's pixels a run on a CPU, four with CUDA."""
        if self.fixed_batch:  # the graph takes exactly this many tiles; shorter batches are padded
            return self.fixed_batch
        return batch_size or tiles_per_run(tile_size_px, gpu=self.providers[0] == "CUDAExecutionProvider")

    def describe(self) -> str:
        """E.g. "ONNX Runtime 1.32.0 (CPUExecutionProvider), int8 model"."""
        ort = import_onnxruntime()
        return f"ONNX Runtime {ort.__version__} ({self.providers[0]}), {self.info.precision} model {self.path.name}"

    def run(self, x: np.ndarray) -> np.ndarray:
        """The raw model output for a normalised float32 batch."""
        size = tuple(x.shape[2:])
        if any(fixed not in (None, got) for fixed, got in zip(self.fixed_size, size)):
            raise CheckpointError(
                f"{self.path} takes tiles of exactly {self.fixed_size[1]} x {self.fixed_size[0]} px, not "
                f"{size[1]} x {size[0]} px. Set the tile size to {self.fixed_size[0]}, or export the model with "
                "dynamic height and width."
            )
        count = len(x)
        if self.fixed_batch and count < self.fixed_batch:
            x = np.concatenate([x, np.zeros((self.fixed_batch - count, *x.shape[1:]), x.dtype)])
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0][:count]
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error kinds; the cause stays chained
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"ONNX Runtime could not run {self.path} on a tile: {first}") from exc

    def tile_runner(self, spec: ModelInput, weights: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """Tiles in 0-1 -> SCL-slot probabilities times the blend ``weights``."""
        mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(spec.std, np.float32).reshape(1, -1, 1, 1)
        slots = np.asarray(self.info.codes) - 1
        ours = self.info.ours
        in_scl_order = len(slots) == scl.NUM_CLASSES and bool((slots == np.arange(len(slots))).all())

        def run(unit: np.ndarray) -> np.ndarray:
            x = ((unit - mean) / std).astype(np.float32, copy=False)
            out = self.run(x).astype(np.float32, copy=False)
            if out.shape[0] != len(unit) or out.shape[1] != len(slots) or out.shape[-2:] != unit.shape[-2:]:
                raise CheckpointError(
                    f"{self.path} returned {tuple(out.shape)} for tiles of {unit.shape[-1]} x {unit.shape[-2]} px; "
                    f"expected {len(slots)} class maps of the tile's size."
                )
            if not ours and not _looks_like_probabilities(out):  # ours end in a softmax
                out = _softmax(out)
            if in_scl_order:
                probs = out
            else:
                probs = np.zeros((len(unit), scl.NUM_CLASSES, *unit.shape[-2:]), np.float32)
                probs[:, slots] = out
            return probs * weights

        return run


def _looks_like_probabilities(out: np.ndarray) -> bool:
    """Whether the channel sums are 1 everywhere (int8 rounding allowed)."""
    return bool(out.min() >= -1e-3 and np.abs(out.sum(axis=1) - 1).max() < 2e-2)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_CACHE: dict[tuple[str, int, str], OnnxModel] = {}
_LOCK = threading.Lock()


def cached_onnx_model(path: Path | str, device: str = "auto", *,
                      progress: Progress = SILENT) -> tuple[OnnxModel, dict[str, Any]]:
    """The ONNX model at ``path`` and its ``predict_scene`` metadata, loaded once per process while unchanged."""
    resolved = Path(path).expanduser().resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as exc:
        raise CheckpointError(
            f"The ONNX model {resolved} does not exist. Export one with Export model to ONNX."
        ) from exc
    key = (str(resolved), mtime, (device or "auto").strip().lower())
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            _CACHE.clear()
            model = _CACHE[key] = OnnxModel(resolved, device)
            log.debug("Loaded %s with %s", resolved, model.providers)
    for warning in model.info.warnings:
        progress.warn(warning)
    return model, model.meta


def clear_onnx_cache() -> None:
    """Forget cached ONNX sessions."""
    with _LOCK:
        _CACHE.clear()
