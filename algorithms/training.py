"""``TrainingAlgorithm``: what Train head and Fine-tune layer4 share: run settings, outputs, the run itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..model_core.data.manifest import Manifest
from ..model_core.errors import ManifestError
from ..model_core.training.config import TrainConfig, TrainResult, curves_beside
from ..runtime import dispatch
from .base import SclAlgorithm, core_errors_as_processing_exceptions, refuse_overwriting_inputs


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """Mark a parameter as advanced (folded away in the dialog)."""
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


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
        train = len(Manifest.load(patches).train)
    except ManifestError:
        return  # training itself says what is wrong with the manifest
    if train // processes < 2:
        raise QgsProcessingException(
            f"{train} training patches cannot feed {processes} processes: each needs at least 2. Set Processes to "
            f"at most {max(1, train // 2)}, or make more patches."
        )


class TrainingAlgorithm(SclAlgorithm):
    """Base of the training algorithms: subclasses build the form and say which ``TrainConfig`` to run."""

    GROUP = "training"
    PATCHES, EPOCHS, BATCH_SIZE, LEARNING_RATE = "PATCHES", "EPOCHS", "BATCH_SIZE", "LEARNING_RATE"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    DEVICE, PROCESSES, SEED, WORKERS, CROP = "DEVICE", "PROCESSES", "SEED", "WORKERS", "CROP"
    OUTPUT_MODEL, OUTPUT_CURVES = "OUTPUT_MODEL", "OUTPUT_CURVES"
    PIXEL_ACCURACY, MIOU, BEST_EPOCH = "PIXEL_ACCURACY", "MIOU", "BEST_EPOCH"
    LAST_MODEL, OUTPUT_HISTORY = "LAST_MODEL", "OUTPUT_HISTORY"

    def add_run_parameters(self) -> None:
        """CROP, DEVICE, PROCESSES, SEED and WORKERS, the advanced run settings."""
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.CROP, self.tr("Train on random crops of (px; 0: whole patches, 128 px crops from random weights, or "
                               "as the model trained on continues)"),
            type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0)))
        self.addParameter(advanced(QgsProcessingParameterString(self.DEVICE, self.tr("Device"), defaultValue="auto")))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.PROCESSES, self.tr("Processes (data-parallel, through torchrun)"),
            type=QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=1, maxValue=64)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.SEED, self.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0)))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.WORKERS, self.tr("Data loading worker processes"), type=QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0, maxValue=32)))

    def add_destinations(self, model_label: str, curves_label: str) -> None:
        """The checkpoint and learning-curve files, then the outputs every training run gives besides them."""
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, model_label, fileFilter="PyTorch checkpoint (*.pt)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CURVES, curves_label, fileFilter="PNG image (*.png)", optional=True))
        self.addOutput(QgsProcessingOutputNumber(self.PIXEL_ACCURACY, self.tr("Best validation pixel accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, self.tr("Best validation mean IoU")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_EPOCH, self.tr("Epoch of the best checkpoint")))
        self.addOutput(QgsProcessingOutputFile(self.LAST_MODEL, self.tr("Checkpoint of the latest epoch")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_HISTORY, self.tr("Training history (CSV)")))

    def run_settings(self, parameters, context) -> dict[str, Any]:
        """CROP, DEVICE, SEED and WORKERS as ``TrainConfig`` fields."""
        return {
            "crop_px": self.parameterAsInt(parameters, self.CROP, context),
            "device": self.parameterAsString(parameters, self.DEVICE, context) or "auto",
            "seed": self.parameterAsInt(parameters, self.SEED, context),
            "workers": self.parameterAsInt(parameters, self.WORKERS, context),
        }

    def train_config(self, parameters, context) -> TrainConfig:
        """The run the user asked for."""
        raise NotImplementedError

    def resume_from(self, parameters, context) -> str | None:
        """The checkpoint this run continues; None starts afresh."""
        return None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        config = self.train_config(parameters, context)
        patches = self.parameterAsFile(parameters, self.PATCHES, context)
        processes = self.parameterAsInt(parameters, self.PROCESSES, context)
        resume = self.resume_from(parameters, context)
        model_path = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        # Learning curves are optional: left out, they go beside the checkpoint, as the CLI puts them.
        curves_path = self.parameterAsFileOutput(parameters, self.OUTPUT_CURVES, context) or str(
            curves_beside(model_path))
        refuse_overwriting_inputs(
            {self.PATCHES: patches, "MODEL": resume, "WEIGHTS_FILE": config.weights_file},
            {self.OUTPUT_MODEL: model_path, self.OUTPUT_CURVES: curves_path},
        )
        if processes > 1:
            check_processes(patches, processes)
        with core_errors_as_processing_exceptions():
            result = dispatch.train(
                Path(patches), config, Path(model_path), Path(curves_path),
                resume=Path(resume) if resume else None, feedback=feedback, processes=processes,
            )
        feedback.pushInfo(self.tr(
            "Best epoch {epoch}: validation pixel accuracy {accuracy:.3f}, mIoU {miou:.3f}. Checkpoint: {path}"
        ).format(epoch=result.best_epoch, accuracy=result.pixel_accuracy, miou=result.mean_iou, path=result.best_path))
        return self.outputs(result)

    def outputs(self, result: TrainResult) -> dict[str, Any]:
        """The algorithm's outputs, by their public names."""
        return {
            self.OUTPUT_MODEL: str(result.best_path),
            self.OUTPUT_CURVES: str(result.curves),
            self.PIXEL_ACCURACY: result.pixel_accuracy,
            self.MIOU: result.mean_iou,
            self.BEST_EPOCH: result.best_epoch,
            self.LAST_MODEL: str(result.last_path),
            self.OUTPUT_HISTORY: str(result.history_csv),
        }
