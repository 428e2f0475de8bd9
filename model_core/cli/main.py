"""The model_core command line, for machines without QGIS (a GPU box, a batch job).

``python -m scl_deeplab.model_core <subcommand> --help``. Options mirror the
Processing parameters, lower-case with dashes, and call the same functions.
Log lines go to stderr; a JSON summary of the outputs goes to stdout.

A subcommand is one function that adds its parser to the subparsers and sets
``func`` (taking the parsed arguments, returning an exit code); list it in
``COMMANDS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import Canceled, InputError, SclDeepLabError
from ..net.weight_sets import CHOICES
from .export_command import add_export
from .output import emit
from .runtime_commands import add_environment, add_job
from .weights_commands import add_weights

log = logging.getLogger("scl_deeplab")

Registration = Callable[[Any], None]  # takes argparse's subparsers object


def add_train(subparsers: Any) -> None:
    """The ``train`` subcommand: one stage of training on a patches manifest."""
    p = subparsers.add_parser(
        "train",
        help="train DeepLabv3 on patches (one stage)",
        description="Train DeepLabv3-ResNet50 on a patches manifest. Writes the best epoch to --output and the "
        "latest beside it (model.pt -> model.last.pt), plus learning curves (PNG, CSV, JSON). Runs unchanged under "
        "torchrun (e.g. torchrun --nproc-per-node 4 -m scl_deeplab.model_core train ...): data-parallel, "
        "--batch-size patches per process, rank 0 writing.",
    )
    p.add_argument("--patches", required=True, type=Path, action="append",
                   help="patches manifest (index.json) or its folder; repeat it to train on several as one")
    p.add_argument("--stage", choices=("head", "layer4", "full"), default="head", help="what trains (default head)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8, help="patches per batch and process (default 8)")
    p.add_argument("--learning-rate", type=float, default=None, help="default 1e-3 for head, 1e-4 otherwise")
    p.add_argument("--backbone-lr-factor", type=float, default=1.0, help="backbone rate = learning rate x this")
    p.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    p.add_argument("--aux", action="store_true", help="train with the auxiliary head and its loss")
    p.add_argument("--aspp-rates", choices=("auto", "scaled", "standard"), default="auto",
                   help="ASPP's atrous rates: auto (scaled to patches under 288 px; a resumed checkpoint's own), "
                   "scaled to the patch size, or torchvision's standard 12, 24, 36")
    p.add_argument("--no-pixel-head", dest="pixel_head", action="store_false",
                   help="a new model without the per-pixel head beside DeepLab (the seed's plain network)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--pretrained", choices=CHOICES, default="auto",
                       help="starting weights: a set on disk (see 'weights list'), auto (the best on disk) or none")
    start.add_argument("--weights-file", type=Path, help="a torchvision state dict or a checkpoint to start from")
    start.add_argument("--resume", type=Path, metavar="CKPT", help="continue from a checkpoint and its history")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("auto", "float32"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--crop", type=int, default=0, metavar="PX",
                   help="train on random crops of PX (default 0: whole patches; 128 px under the from-scratch recipe, "
                        "or what the checkpoint started from trained on)")
    p.add_argument("--output", required=True, type=Path, metavar="CKPT", help="best checkpoint (.pt)")
    p.add_argument("--curves", type=Path, metavar="PNG", help="learning curves (default: beside --output)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments."""
    from ..progress import PrintProgress
    from ..training.config import DEFAULT_LEARNING_RATE, TrainConfig, curves_beside
    from ..training.curves import write_curves
    from ..training.distributed import Ranks
    from ..training.train import train

    config = TrainConfig(
        stage=args.stage,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate or DEFAULT_LEARNING_RATE[args.stage],
        backbone_lr_factor=args.backbone_lr_factor,
        class_weights=args.class_weights,
        aux=args.aux,
        aspp_rates=args.aspp_rates,
        pixel_head=args.pixel_head,
        pretrained=args.pretrained,
        weights_file=str(args.weights_file) if args.weights_file else None,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        workers=args.workers,
        crop_px=args.crop,
    )
    result = train(args.patches, config, args.output, resume=args.resume, progress=PrintProgress())
    if not Ranks.from_env().is_main:
        return 0  # under torchrun rank 0 writes the curves and the summary
    curves = args.curves or curves_beside(args.output)
    written = write_curves(result.history, curves)
    emit(dataclasses.replace(result, curves=written["png"], history_csv=written["csv"]).summary())
    return 0


def add_predict(subparsers: Any) -> None:
    """The ``predict`` subcommand: a whole scene's SCL from a checkpoint, tile by tile."""
    p = subparsers.add_parser(
        "predict",
        help="predict the SCL of whole scenes with a checkpoint",
        description="Predict SCL codes for one or more scenes (the model is loaded once). Writes a GeoTIFF of SCL "
        "codes on the scene's grid with the SCL colours and a .qml style beside it.",
    )
    scenes = p.add_mutually_exclusive_group(required=True)
    scenes.add_argument("--input", type=Path, nargs="+", help="true-colour scene(s), each with its --output")
    scenes.add_argument("--scenes", type=Path, metavar="LIST", help="a text file of scene paths (one a line, "
                        "# comments) or a folder of .tif/.tiff/.vrt/.jp2 scenes; under torchrun each rank takes "
                        "its share; needs --output-folder")
    p.add_argument("--model", required=True, type=Path, metavar="CKPT",
                   help="checkpoint (.pt) or ONNX model (.onnx, runs without PyTorch)")
    p.add_argument("--bands", default="", help="the scene's band numbers in the model's order, e.g. 1,2,3 or "
                   "3,2,1,4,5,6 (default: the bands named like the model's, else the first ones)")
    p.add_argument("--tile-size", type=int, default=0, help="pixels, a multiple of 8; 0 (default): as trained, the "
                   "checkpoint's patch size for models trained on small patches, else 512")
    p.add_argument("--overlap", type=int, default=None, help="pixels, less than half the tile size "
                   "(default: an eighth of the tile)")
    p.add_argument("--batch-size", type=int, default=0, help="tiles per batch; 0 (default): 1 on a CPU, 4 on a GPU")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("auto", "float32"), default="auto")
    p.add_argument("--fast", action="store_true", help="backbone at output stride 16: 2-3x faster, smoother class edges")
    p.add_argument("--extent", type=float, nargs=4, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
                   help="only this part, in the scene's CRS")
    p.add_argument("--output", type=Path, nargs="+", help="one GeoTIFF per --input")
    p.add_argument("--confidence", type=Path, nargs="*", help="optional confidence GeoTIFF per --input; "
                   "with --scenes a flag: <stem>_confidence.tif beside each output")
    p.add_argument("--output-folder", type=Path, metavar="DIR", help="with --scenes: <stem>_scl.tif per scene, "
                   "manifest.json of what each rank did")
    p.add_argument("--overwrite", action="store_true", help="with --scenes: predict complete scenes again")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Run ``predict`` from parsed arguments."""
    from ..data.bands import parse_optional_bands
    from ..errors import InputError
    from ..prediction.config import PredictConfig
    from ..prediction.predict import predict_scene_from_checkpoint
    from ..prediction.tiling import TilingConfig
    from ..progress import PrintProgress

    if args.scenes is None and (args.output_folder or args.overwrite):
        raise InputError("--output-folder and --overwrite go with --scenes; with --input give one --output per scene.")
    if args.scenes is not None and (args.output or args.confidence or not args.output_folder):
        raise InputError("With --scenes give --output-folder (and --confidence without paths), not --output.")
    confidence = args.confidence if args.confidence is not None else [None] * len(args.input or [])
    if args.input is not None and not len(args.input) == len(args.output or []) == len(confidence):
        raise InputError("Give one --output (and one --confidence, if any) per --input scene.")
    config = PredictConfig(
        tiling=TilingConfig(args.tile_size, args.overlap),
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        bands=parse_optional_bands(args.bands),
        extent=tuple(args.extent) if args.extent else None,
        fast=args.fast,
    )
    if args.scenes is not None:
        return run_predict_scenes(args, config)
    results = []
    for scene, out, conf in zip(args.input, args.output, confidence):
        r = predict_scene_from_checkpoint(scene, args.model, out, config, confidence_path=conf, progress=PrintProgress())
        results.append({"input": scene, "output": r.output, "confidence": r.confidence, "tiles": r.tiles,
                        "seconds": round(r.seconds, 2), "device": r.device})
    emit({"predictions": results})
    return 0


def run_predict_scenes(args: argparse.Namespace, config: Any) -> int:
    """``predict --scenes``: this rank's share of the scenes (see batch_predict); 1 when any scene failed."""
    from ..prediction.batch_predict import predict_scenes

    def report(result: Any) -> None:
        emit({"manifest": result.manifest, "failed": result.failed, "predictions": result.entries})

    result = predict_scenes(args.scenes, args.model, args.output_folder, config, confidence=args.confidence == [],
                            overwrite=args.overwrite, report=report)
    return 1 if result.failed else 0


def add_evaluate(subparsers: Any) -> None:
    """The ``evaluate`` subcommand: a prediction against the real SCL."""
    p = subparsers.add_parser(
        "evaluate",
        help="compare a predicted SCL with the reference SCL",
        description="Pixel accuracy, mean IoU, kappa and per-class scores of a prediction against a reference SCL "
        "(brought onto the prediction's grid with nearest). Code 0 is ignored.",
    )
    p.add_argument("--prediction", required=True, type=Path)
    p.add_argument("--reference", required=True, type=Path)
    p.add_argument("--extent", type=float, nargs=4, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
                   help="only this part, in the prediction's CRS")
    p.add_argument("--image", type=Path, help="true colour for the result figure")
    p.add_argument("--report", type=Path, help="HTML report")
    p.add_argument("--matrix", type=Path, help="confusion matrix CSV")
    p.add_argument("--matrix-png", type=Path, help="confusion matrix figure")
    p.add_argument("--disagreement", type=Path, help="disagreement GeoTIFF")
    p.add_argument("--figure", type=Path, help="input | reference | prediction PNG")
    p.add_argument("--metrics", type=Path, help="the numbers as JSON")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments."""
    from ..evaluation.evaluate import EvaluationOutputs, evaluate_to_files
    from ..progress import PrintProgress

    outputs = EvaluationOutputs(report=args.report, matrix_csv=args.matrix, matrix_png=args.matrix_png,
                                disagreement=args.disagreement, figure=args.figure, metrics_json=args.metrics)
    result = evaluate_to_files(args.prediction, args.reference, outputs, image=args.image,
                               extent=tuple(args.extent) if args.extent else None, progress=PrintProgress())
    summary = result.to_dict()
    summary.pop("confusion_matrix")
    emit({**summary, **{k: v for k, v in vars(outputs).items() if v is not None}})
    return 0


SETUP_RUNTIME = "setup-runtime"


def add_setup_runtime(subparsers: Any) -> None:
    """``setup-runtime``, the older spelling of the plugin's ``python -m scl_deeplab.runtime.setup``."""
    subparsers.add_parser(SETUP_RUNTIME, add_help=False,
                          help="make a worker Python for the plugin (= python -m scl_deeplab.runtime.setup)")


def run_setup_runtime(argv: list[str]) -> int:
    """Hand ``argv`` to the plugin's runtime set-up, which lives beside model_core in the plugin, not in it."""
    plugin = __package__.rsplit(".", 2)[0] if __package__.count(".") >= 2 else ""
    try:
        setup = importlib.import_module(f"{plugin}.runtime.setup") if plugin else None
    except ModuleNotFoundError:
        setup = None
    if setup is None:
        raise InputError("setup-runtime comes with the SCL DeepLab QGIS plugin (its runtime package), and this "
                         "model_core is installed without it. Run it from the plugin folder's parent.")
    return int(setup.main(argv))


# One line per subcommand.
COMMANDS: list[Registration] = [
    add_train,
    add_predict,
    add_evaluate,
    add_export,
    add_environment,
    add_job,
    add_setup_runtime,
    add_weights,
]


def parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    top = argparse.ArgumentParser(prog="python -m scl_deeplab.model_core", description=__doc__.split("\n\n")[0])
    top.add_argument("-v", "--verbose", action="store_true", help="also log developer detail")
    subparsers = top.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for register in COMMANDS:
        register(subparsers)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; exit code 0 on success, 1 on a reported error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command == SETUP_RUNTIME:  # its options are the runtime set-up's own
        try:
            return run_setup_runtime(argv[argv.index(SETUP_RUNTIME) + 1:])
        except SclDeepLabError as exc:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
            log.error("Error: %s", exc)
            return 1
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return int(args.func(args))
    except Canceled as exc:
        log.error("%s", exc)
        return 130
    except KeyboardInterrupt:
        log.error("Interrupted; checkpoints of complete epochs stay valid.")
        return 130
    except SclDeepLabError as exc:
        log.error("Error: %s", exc)
        return 1
