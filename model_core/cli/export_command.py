"""The ``export`` subcommand: a checkpoint as an ONNX model, float32 or int8."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from .output import emit


def add_export(subparsers: Any) -> None:
    """Register ``export``: a checkpoint to ONNX for ONNX Runtime (and Deepness), without PyTorch at prediction."""
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (float32, or int8 with --int8 --patches)",
        description="Export a checkpoint's prediction graph (probabilities, dynamic batch, height and width) to ONNX "
        "with its metadata, also the keys Deepness reads. With --int8, quantise convolutions to int8 with ranges "
        "calibrated on training patches (faster on CPUs).",
    )
    p.add_argument("--model", required=True, type=Path, metavar="CKPT", help="checkpoint (.pt)")
    p.add_argument("--output", required=True, type=Path, metavar="ONNX", help="ONNX model to write (.onnx)")
    p.add_argument("--int8", action="store_true", help="int8 static quantisation (needs --patches)")
    p.add_argument("--patches", type=Path, help="patches manifest (index.json) to calibrate the int8 model on")
    p.add_argument("--calibration-tiles", type=int, default=32, help="patches to calibrate on (default 32)")
    p.add_argument("--resolution-m", type=float, default=10.0, help="pixel size recorded for Deepness (default 10)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Run ``export`` from parsed arguments."""
    from ..net.onnx_export import export_onnx
    from ..progress import PrintProgress

    result = export_onnx(args.model, args.output, int8=args.int8, patches=args.patches,
                         calibration_tiles=args.calibration_tiles, resolution_m=args.resolution_m,
                         progress=PrintProgress())
    emit(dataclasses.asdict(result))
    return 0
