"""Processing algorithm ``scldeeplab:trainhead``: train DeepLabv3's head on a frozen backbone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import SclAlgorithm, core_errors_as_processing_exceptions

PRETRAINED_OPTIONS = ["auto", "coco", "imagenet", "none"]

HELP = (
    "Trains the classifier head of DeepLabv3-ResNet50 to predict the Sentinel-2 Scene Classification Layer (SCL, "
    "codes 1-11; code 0 is ignored) from true colour, on the patches of Make patches. The ResNet50 backbone stays "
    "frozen, its BatchNorm statistics included; fine-tune it afterwards with Fine-tune layer4.\n\n"
    "Patches: the index.json written by Make patches (its train/validation split is used).\n"
    "Pretrained weights: auto takes torchvision's COCO DeepLabv3 weights if on disk, else its ImageNet ResNet50, "
    "else random weights (which learn little with a frozen backbone). Nothing is downloaded: put torchvision's "
    "files in the torch hub checkpoints folder ($TORCH_HOME/hub/checkpoints, usually ~/.cache/torch/hub/checkpoints), "
    "or choose a Weights file (a torchvision state dict or a checkpoint of this plugin).\n"
    "Class weights: weights the loss by inverse class frequency, so rare classes such as snow count more.\n"
    "Device: auto (CUDA GPU, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.\n"
    "Processes: above 1 trains data-parallel through PyTorch's torchrun, one process per GPU (or per equal share of "
    "the CPU cores), each with Batch size patches per step; gradients, BatchNorm statistics and validation metrics "
    "are shared across processes, and cancel ends them all.\n"
    "Data loading worker processes: 0 reads patches in the training thread, the safe choice inside QGIS; a few "
    "help keep a GPU busy (or train from the command line: python -m scl_deeplab.model_core train --help).\n\n"
    "Outputs: the checkpoint of the epoch with the best validation mIoU; the latest epoch beside it with .last "
    "before the suffix (model.pt and model.last.pt); the learning curves (curves.png, with the history beside it as "
    "curves.history.csv and .json); the best validation pixel accuracy and mean IoU. The log shows one line per "
    "epoch.\n\n"
    "Time: on a 2-core CPU with bfloat16 (Intel AMX) a head epoch takes about 2 s per 512 px patch (1000 patches: "
    "about half an hour); CPUs without native bfloat16 take 1.5-2 times longer, a GPU is tens of times faster. "
    "Cancel stops after the current batch; the checkpoints of complete epochs stay valid."
)


def add_training_outputs(alg: QgsProcessingAlgorithm) -> None:
    """The outputs both training algorithms give besides their destination files."""
    alg.addOutput(QgsProcessingOutputNumber("PIXEL_ACCURACY", alg.tr("Best validation pixel accuracy")))
    alg.addOutput(QgsProcessingOutputNumber("MIOU", alg.tr("Best validation mean IoU")))
    alg.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", alg.tr("Epoch of the best checkpoint")))
    alg.addOutput(QgsProcessingOutputFile("LAST_MODEL", alg.tr("Checkpoint of the latest epoch")))
    alg.addOutput(QgsProcessingOutputFile("OUTPUT_HISTORY", alg.tr("Training history (CSV)")))


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """Mark a parameter as advanced (folded away in the dialog)."""
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def add_run_parameters(alg: QgsProcessingAlgorithm) -> None:
    """DEVICE, PROCESSES, SEED and WORKERS, the advanced run settings both training algorithms share."""
    alg.addParameter(advanced(QgsProcessingParameterString("DEVICE", alg.tr("Device"), defaultValue="auto")))
    alg.addParameter(advanced(QgsProcessingParameterNumber(
        "PROCESSES", alg.tr("Processes (data-parallel, through torchrun)"), type=QgsProcessingParameterNumber.Integer,
        defaultValue=1, minValue=1, maxValue=64)))
    alg.addParameter(advanced(QgsProcessingParameterNumber(
        "SEED", alg.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0)))
    alg.addParameter(advanced(QgsProcessingParameterNumber(
        "WORKERS", alg.tr("Data loading worker processes"), type=QgsProcessingParameterNumber.Integer,
        defaultValue=0, minValue=0, maxValue=32)))


def learning_rate_parameter(name: str, label: str, default: float) -> QgsProcessingParameterNumber:
    """A learning-rate field that shows enough decimals for 1e-4."""
    parameter = QgsProcessingParameterNumber(
        name, label, type=QgsProcessingParameterNumber.Double, defaultValue=default, minValue=1e-8, maxValue=1.0
    )
    parameter.setMetadata({"widget_wrapper": {"decimals": 6}})
    return parameter


def check_processes(patches: str, processes: int) -> None:
    """Refuse, before starting torchrun, more processes than the training patches can feed (2 each)."""
    try:
        manifest = json.loads(Path(patches).read_text(encoding="utf-8"))
        train = sum(record.get("split") == "train" for record in manifest["patches"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # training itself says what is wrong with the manifest
    if train // processes < 2:
        raise QgsProcessingException(
            f"{train} training patches cannot feed {processes} processes: each needs at least 2. Set Processes to "
            f"at most {max(1, train // 2)}, or make more patches."
        )


def run_training(
    config: Any, patches: str, output_model: str, output_curves: str, feedback, resume: str | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Train with ``config`` (``TrainConfig``'s fields) in the chosen runtime, and return the algorithm's outputs.

    ``processes`` above 1 trains data-parallel under torchrun (one process per GPU, or per share of the CPU).
    """
    from .worker import run_task

    # Learning curves are optional: left out, they go beside the checkpoint, as the CLI puts them.
    output_curves = output_curves or str(Path(output_model).with_name(f"{Path(output_model).stem}_curves.png"))
    if processes > 1:
        check_processes(patches, processes)
    args = {"patches": patches, "config": config, "output": output_model, "curves": output_curves,
            "resume": resume or None}
    with core_errors_as_processing_exceptions():
        result = SimpleNamespace(**run_task("train", args, feedback, processes=processes))
    written = {"png": result.curves, "csv": result.history_csv}
    feedback.pushInfo(
        f"Best epoch {result.best_epoch}: validation pixel accuracy {result.pixel_accuracy:.3f}, "
        f"mIoU {result.mean_iou:.3f}. Checkpoint: {result.best_path}"
    )
    return {
        "OUTPUT_MODEL": str(result.best_path),
        "OUTPUT_CURVES": str(written["png"]),
        "PIXEL_ACCURACY": result.pixel_accuracy,
        "MIOU": result.mean_iou,
        "BEST_EPOCH": result.best_epoch,
        "LAST_MODEL": str(result.last_path),
        "OUTPUT_HISTORY": str(written["csv"]),
    }


class TrainHead(SclAlgorithm):
    """Head-only training of DeepLabv3-ResNet50 on SCL patches."""

    GROUP = "training"
    HELP = HELP
    PATCHES, EPOCHS, BATCH_SIZE, LEARNING_RATE = "PATCHES", "EPOCHS", "BATCH_SIZE", "LEARNING_RATE"
    PRETRAINED, WEIGHTS_FILE, CLASS_WEIGHTS = "PRETRAINED", "WEIGHTS_FILE", "CLASS_WEIGHTS"
    DEVICE, PROCESSES, SEED, WORKERS = "DEVICE", "PROCESSES", "SEED", "WORKERS"
    OUTPUT_MODEL, OUTPUT_CURVES = "OUTPUT_MODEL", "OUTPUT_CURVES"

    def name(self) -> str:
        return "trainhead"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Train head")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterFile(self.PATCHES, self.tr("Patches (index.json)"), extension="json"))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, self.tr("Epochs"), type=QgsProcessingParameterNumber.Integer, defaultValue=10, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, self.tr("Batch size (patches)"), type=QgsProcessingParameterNumber.Integer,
            defaultValue=8, minValue=2))
        self.addParameter(learning_rate_parameter(self.LEARNING_RATE, self.tr("Learning rate"), 1e-3))
        self.addParameter(QgsProcessingParameterEnum(
            self.PRETRAINED, self.tr("Pretrained weights"), options=PRETRAINED_OPTIONS, defaultValue="auto",
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS_FILE, self.tr("Weights file (instead of pretrained weights)"), optional=True,
            fileFilter="PyTorch weights (*.pt *.pth)"))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLASS_WEIGHTS, self.tr("Weight the loss by inverse class frequency"), defaultValue=False))
        add_run_parameters(self)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, self.tr("Model checkpoint"), fileFilter="PyTorch checkpoint (*.pt)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CURVES, self.tr("Learning curves"), fileFilter="PNG image (*.png)", optional=True))
        add_training_outputs(self)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        config = dict(  # TrainConfig's fields; the runtime (in-process or worker) builds it
            stage="head",
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            pretrained=self.parameterAsEnumString(parameters, self.PRETRAINED, context) or "auto",
            weights_file=self.parameterAsFile(parameters, self.WEIGHTS_FILE, context) or None,
            class_weights=self.parameterAsBool(parameters, self.CLASS_WEIGHTS, context),
            device=self.parameterAsString(parameters, self.DEVICE, context) or "auto",
            seed=self.parameterAsInt(parameters, self.SEED, context),
            workers=self.parameterAsInt(parameters, self.WORKERS, context),
        )
        return run_training(
            config,
            self.parameterAsFile(parameters, self.PATCHES, context),
            self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context),
            self.parameterAsFileOutput(parameters, self.OUTPUT_CURVES, context),
            feedback,
            processes=self.parameterAsInt(parameters, self.PROCESSES, context),
        )
