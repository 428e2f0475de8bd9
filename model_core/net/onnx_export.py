"""Export a checkpoint's prediction graph to ONNX, for ONNX Runtime (and Deepness) without PyTorch.

The graph is DeepLabv3's main head with a softmax: float32 (batch, bands, height,
width) normalised input in, (batch, 11, height, width) class probabilities out, with
batch, height and width dynamic. The auxiliary head is left out. The checkpoint's
metadata goes into the file's metadata properties (``prediction.onnx_metadata``);
with ``int8`` the float32 graph is then quantised (``onnx_quantize``).
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_file
from ..errors import InputError
from ..prediction.onnx_metadata import metadata_props
from ..progress import SILENT, Progress, check_canceled
from .checkpoint import load_model

OPSET = 17  # read by every ONNX Runtime since 1.12 (and by Deepness's); the graph needs nothing newer
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
TRACE_SIZE_PX = 64  # any multiple of 8 works: height and width are dynamic


class Probabilities(nn.Module):
    """DeepLab's ``{"out": logits}`` as class probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)["out"]
        # Spelled out rather than softmax(dim=1): ONNX Runtime's Softmax over the channel axis of an
        # NCHW tensor transposes it there and back (150 ms per 512 px tile on the bench CPU, a tenth
        # of the int8 model's time); these element-wise steps give the same values in 20 ms.
        exp = (logits - logits.amax(dim=1, keepdim=True)).exp()
        return exp / exp.sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote."""

    output: Path
    precision: str
    size_bytes: int
    kept_float: tuple[str, ...] = ()


def onnx_versions() -> dict[str, str]:
    """Versions recorded in an exported file."""
    import onnx
    import torchvision

    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "onnx": onnx.__version__}


def export_float32(model: nn.Module, path: Path, bands: int) -> None:
    """Trace ``model`` (eval mode, on the CPU) into an ONNX file at ``path`` with dynamic batch, height and width."""
    example = torch.zeros(1, bands, TRACE_SIZE_PX, TRACE_SIZE_PX)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter needs no onnxscript and handles DeepLab; its deprecation notice is no news here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Probabilities(model).eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic}, do_constant_folding=True,
        )


def inline_identities(path: Path) -> int:
    """Give each ``Identity`` of an initializer its own copy of it; returns how many were inlined.

    The exporter stores equal constants once (folded BatchNorm of untrained layers
    leaves many equal biases) and reads the copies through ``Identity`` nodes; the
    int8 quantiser only quantises a convolution whose bias is an initializer, so
    without this most convolutions stayed float32 (int8 ran no faster).
    """
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    inlined = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    for node in inlined:
        copy = onnx.TensorProto()
        copy.CopyFrom(initializers[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)
    if inlined:
        onnx.save(proto, str(path))
    return len(inlined)


def add_metadata(path: Path, props: dict[str, str]) -> None:
    """Write ``props`` into the ONNX file at ``path`` (replacing keys it already has)."""
    import onnx

    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for entry in kept:
        proto.metadata_props.add(key=entry.key, value=entry.value)
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "SCL DeepLab"
    onnx.save(proto, str(path))


def export_onnx(
    checkpoint_path: Path | str,
    out_path: Path | str,
    *,
    int8: bool = False,
    patches: Path | str | None = None,
    calibration_tiles: int = 32,
    resolution_m: float = 10.0,
    float32_copy: Path | str | None = None,
    progress: Progress = SILENT,
) -> ExportResult:
    """Export a checkpoint to ONNX at ``out_path``; with ``int8``, quantised with calibration on ``patches``.

    With ``int8``, ``float32_copy`` also keeps the float32 model the int8 one is
    quantised from (one trace for both files, as the bench needs them).
    Nothing is left at ``out_path`` (or ``float32_copy``) when the export fails or is canceled.
    """
    out_path = Path(out_path)
    if int8 and patches is None:
        raise InputError(
            "int8 export needs training patches to calibrate on: give the patches index.json (PATCHES / --patches)."
        )
    for path in (out_path, *([Path(float32_copy)] if float32_copy is not None else [])):
        if path.suffix.lower() != ".onnx":
            raise InputError(f"The ONNX model's file name should end in .onnx, not {path.name}.")
    if float32_copy is not None and not int8:
        raise InputError("A float32 copy comes with an int8 export only; without int8 the output is float32.")
    model, meta = load_model(checkpoint_path, "cpu")
    bands = len(meta.get("input", {}).get("band_order", [])) or 3
    exported = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    props = metadata_props(meta, precision="int8" if int8 else "float32", exported=exported,
                           resolution_m=resolution_m, versions=onnx_versions())
    progress.info(f"Exporting {Path(checkpoint_path).name} to ONNX (opset {OPSET}, {bands} bands, float32).")
    kept: tuple[str, ...] = ()
    copy = atomic_file(float32_copy) if float32_copy is not None else nullcontext(None)
    with tempfile.TemporaryDirectory(prefix="scl_deeplab_onnx_") as folder, copy as float_tmp, \
            atomic_file(out_path) as tmp:
        float_path = Path(folder) / "float32.onnx"
        export_float32(model, float_path, bands)
        inline_identities(float_path)
        progress.set_progress(30 if int8 else 80)
        check_canceled(progress)
        if int8:
            from .onnx_quantize import quantize_int8

            kept = quantize_int8(float_path, Path(tmp), Path(patches), meta, tiles=calibration_tiles,
                                 progress=progress)
            add_metadata(Path(tmp), props)
            if float_tmp is not None:
                add_metadata(float_path, metadata_props(meta, precision="float32", exported=exported,
                                                        resolution_m=resolution_m, versions=onnx_versions()))
                Path(float_tmp).write_bytes(float_path.read_bytes())
        else:
            add_metadata(float_path, props)
            Path(tmp).write_bytes(float_path.read_bytes())
        check_canceled(progress)
    progress.set_progress(100)
    size = out_path.stat().st_size
    progress.info(f"Wrote {out_path} ({size / 1e6:.0f} MB, {'int8' if int8 else 'float32'}).")
    return ExportResult(out_path, "int8" if int8 else "float32", size, kept)
