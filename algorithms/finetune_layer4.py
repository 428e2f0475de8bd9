"""Processing algorithm ``scldeeplab:finetunelayer4``: continue a checkpoint with ResNet layer4 (or all) unfrozen."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..model_core.training.config import TrainConfig
from .training import TrainingAlgorithm, advanced, learning_rate_parameter

UNFREEZE_OPTIONS = ["layer4", "full"]

HELP = (
    "Continues training a checkpoint of Train head with more of DeepLabv3-ResNet50 unfrozen: the last ResNet stage "
    "(layer4, the default) or the whole network (full). BatchNorm layers that stay frozen keep their statistics.\n\n"
    "Model: a checkpoint written by Train head (or by this algorithm). Its weights, input normalisation and history "
    "carry on: epoch numbers continue, and the learning curves show both stages with a marker where the stage "
    "changed.\n"
    "Patches: the index.json written by Make patches, usually the same as for Train head.\n"
    "Backbone learning-rate factor: the unfrozen backbone layers learn at the learning rate times this.\n"
    "Train on random crops (advanced): 0 goes on as the model trained (on whole patches, or on the crops the "
    "from-scratch recipe of Train head chose); a size below the patch size trains on random crops of it.\n"
    "Processes: above 1 trains data-parallel through torchrun (one process per GPU, or per share of the CPU cores), "
    "Batch size patches per process; BatchNorm layers that train are synchronised across processes. A checkpoint "
    "can continue with a different number of processes.\n\n"
    "Outputs: the checkpoint of this run's epoch with the best validation mIoU; the latest epoch beside it with "
    ".last before the suffix; the learning curves of the whole history (PNG, with .history.csv and .history.json "
    "beside it); the best validation pixel accuracy and mean IoU of this run.\n\n"
    "Time: a layer4 epoch costs about 1.5 times a head epoch (on a 2-core CPU with bfloat16, about 3 s per 512 px "
    "patch); full costs more again. Cancel stops after the current batch; the checkpoints of complete epochs stay "
    "valid."
)


class FinetuneLayer4(TrainingAlgorithm):
    """Fine-tuning of ResNet layer4 (or the full network) from a head checkpoint."""

    HELP = HELP
    MODEL, UNFREEZE, BACKBONE_LR_FACTOR = "MODEL", "UNFREEZE", "BACKBONE_LR_FACTOR"

    def name(self) -> str:
        return "finetunelayer4"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Fine-tune layer4")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterFile(self.MODEL, self.tr("Model checkpoint"), extension="pt"))
        self.addParameter(QgsProcessingParameterFile(self.PATCHES, self.tr("Patches (index.json)"), extension="json"))
        self.addParameter(QgsProcessingParameterNumber(
            self.EPOCHS, self.tr("Epochs"), type=QgsProcessingParameterNumber.Integer, defaultValue=5, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, self.tr("Batch size (patches)"), type=QgsProcessingParameterNumber.Integer,
            defaultValue=8, minValue=2))
        self.addParameter(learning_rate_parameter(self.LEARNING_RATE, self.tr("Learning rate"), 1e-4))
        self.addParameter(QgsProcessingParameterEnum(
            self.UNFREEZE, self.tr("Unfreeze"), options=UNFREEZE_OPTIONS, defaultValue="layer4",
            usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLASS_WEIGHTS, self.tr("Weight the loss by inverse class frequency"), defaultValue=False))
        self.addParameter(advanced(QgsProcessingParameterNumber(
            self.BACKBONE_LR_FACTOR, self.tr("Backbone learning-rate factor"),
            type=QgsProcessingParameterNumber.Double, defaultValue=1.0, minValue=0.001, maxValue=10.0)))
        self.add_run_parameters()
        self.add_destinations(self.tr("Fine-tuned model checkpoint"), self.tr("Learning curves (both stages)"))

    def train_config(self, parameters, context) -> TrainConfig:
        return TrainConfig(
            stage=self.parameterAsEnumString(parameters, self.UNFREEZE, context) or "layer4",
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            backbone_lr_factor=self.parameterAsDouble(parameters, self.BACKBONE_LR_FACTOR, context),
            class_weights=self.parameterAsBool(parameters, self.CLASS_WEIGHTS, context),
            **self.run_settings(parameters, context),
        )

    def resume_from(self, parameters, context) -> str | None:
        return self.parameterAsFile(parameters, self.MODEL, context) or None
