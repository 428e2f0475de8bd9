"""Processing algorithm ``scldeeplab:trainhead``: train DeepLabv3's head on a frozen backbone."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..model_core.net.weight_sets import CHOICES, on_disk_label, summary
from ..model_core.training.config import TrainConfig
from .training import TrainingAlgorithm, learning_rate_parameter

PRETRAINED_OPTIONS = list(CHOICES)
ASPP_RATE_OPTIONS = ["auto", "scaled", "standard"]  # model_core.net.aspp.CHOICES; no torch import here

HELP = (
    "Trains the classifier head of DeepLabv3-ResNet50 to predict the Sentinel-2 Scene Classification Layer (SCL, "
    "codes 1-11; code 0 is ignored) from true colour (or the bands of multispectral patches), on the patches of "
    "Make patches. The ResNet50 backbone stays "
    "frozen, its BatchNorm statistics included; fine-tune it afterwards with Fine-tune layer4.\n\n"
    "Patches: the index.json written by Make patches (its train/validation split is used).\n"
    "Pretrained weights: auto takes the best set on disk (COCO DeepLabv3, else the Sentinel-2 true-colour "
    "backbones SatlasPretrain then SSL4EO-S12, else ImageNet), else random weights (which learn little with a "
    "frozen backbone); none starts from random weights. Training never downloads: get a set once with Set-up > "
    "Download pretrained weights, or choose a Weights file (a torchvision or torchgeo state dict, or a checkpoint "
    "of this plugin). The input normalisation the weights were trained with is recorded in the checkpoint and "
    "applied in training and prediction. Multispectral patches (bands other than red, green, blue; see Make "
    "patches) get a first convolution reading all their bands: true-colour weights are widened, their RGB filters "
    "copied unchanged to the bands named B04, B03, B02 and every further band starting from the mean RGB filter "
    "times 3/N (the inputs are normalised per band by the training patches' mean and std, so the layer's mean "
    "response stays as it was); with none it is a plain N-band convolution. The sets (ssl4eo-ms needs patches of "
    "its 13 bands and is refused otherwise):\n"
    "{weights}\n"
    "From random weights: when auto finds no weights on disk, the from-scratch recipe runs instead of the head "
    "stage (a frozen random backbone learns little): the whole network trains, with warm-up and poly decay, on "
    "random 128 px crops of the patches, sixteen of a 512 px patch each epoch (the same pixels as whole patches, "
    "in sixteen times the steps), and validates on a grid of such crops; Predict then uses 128 px tiles. Set "
    "Pretrained weights to none to keep the head stage.\n"
    "Train on random crops (advanced): 0 trains on whole patches, or on the from-scratch recipe's 128 px crops, "
    "or as the model given to start from did; a size below the patch size crops every run.\n"
    "Class weights: weights the loss by inverse class frequency, so rare classes such as snow count more.\n"
    "Pixel head: a small classifier of each pixel's own band values (three 1x1 convolutions, bands -> 64 -> 64 -> "
    "11) whose scores are added to DeepLab's. DeepLab decides at 1/8 of the resolution and interpolates, and from "
    "random weights it needs many steps to separate colours finely; the pixel head learns each pixel's colour rule "
    "within minutes and keeps class edges sharp, and DeepLab adds what context tells (shadow beside cloud, "
    "outlines). It trains in every stage and is stored in the checkpoint; untick it for the plain network.\n"
    "ASPP rates: DeepLabv3's ASPP looks up to 288 px around each pixel (rates 12, 24, 36); on smaller patches its "
    "outer taps see only padding and the model fails on larger tiles. auto scales the rates to patches under "
    "288 px (32 px: rates 1, 2, 3) and keeps them for larger ones; scaled always scales them; standard keeps "
    "torchvision's. The rates are stored in the checkpoint; Fine-tune layer4 and Predict use them again.\n"
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


class TrainHead(TrainingAlgorithm):
    """Head-only training of DeepLabv3-ResNet50 on SCL patches."""

    HELP = HELP
    PRETRAINED, WEIGHTS_FILE, ASPP_RATES, PIXEL_HEAD = "PRETRAINED", "WEIGHTS_FILE", "ASPP_RATES", "PIXEL_HEAD"

    def name(self) -> str:
        return "trainhead"

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr(self.HELP).format(weights=summary())

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
        pretrained = QgsProcessingParameterEnum(
            self.PRETRAINED, self.tr("Pretrained weights (on disk: {found})").format(found=on_disk_label()),
            options=PRETRAINED_OPTIONS, defaultValue="auto", usesStaticStrings=True)
        pretrained.setHelp(summary())  # the tooltip: what each option is and whether it is on disk
        self.addParameter(pretrained)
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS_FILE, self.tr("Weights file (instead of pretrained weights)"), optional=True,
            fileFilter="PyTorch weights (*.pt *.pth)"))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLASS_WEIGHTS, self.tr("Weight the loss by inverse class frequency"), defaultValue=False))
        self.addParameter(QgsProcessingParameterEnum(
            self.ASPP_RATES, self.tr("ASPP rates (auto: scaled to patches under 288 px)"), options=ASPP_RATE_OPTIONS,
            defaultValue="auto", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.PIXEL_HEAD, self.tr("Pixel head beside DeepLab (each pixel's own colour, at full resolution)"),
            defaultValue=True))
        self.add_run_parameters()
        self.add_destinations(self.tr("Model checkpoint"), self.tr("Learning curves"))

    def train_config(self, parameters, context) -> TrainConfig:
        return TrainConfig(
            stage="head",
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            learning_rate=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            pretrained=self.parameterAsEnumString(parameters, self.PRETRAINED, context) or "auto",
            weights_file=self.parameterAsFile(parameters, self.WEIGHTS_FILE, context) or None,
            class_weights=self.parameterAsBool(parameters, self.CLASS_WEIGHTS, context),
            aspp_rates=self.parameterAsEnumString(parameters, self.ASPP_RATES, context) or "auto",
            pixel_head=self.parameterAsBool(parameters, self.PIXEL_HEAD, context),
            **self.run_settings(parameters, context),
        )
