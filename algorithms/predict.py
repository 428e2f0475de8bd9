"""``scldeeplab:predict``: segment a whole scene into SCL classes with a trained checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..model_core.data.bands import parse_optional_bands
from ..model_core.errors import InputError
from ..model_core.prediction.config import PredictConfig
from ..model_core.prediction.tiling import AUTO_TILE, TilingConfig
from ..runtime import dispatch
from .base import (
    RESOURCES,
    SclAlgorithm,
    core_errors_as_processing_exceptions,
    refuse_overwriting_inputs,
    style_output,
)

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class Predict(SclAlgorithm):
    """A scene's SCL predicted tile by tile, blended without seams, as a styled layer."""

    INPUT, BANDS, MODEL = "INPUT", "BANDS", "MODEL"
    TILE_SIZE, OVERLAP, BATCH_SIZE, DEVICE, EXTENT = "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "DEVICE", "EXTENT"
    FAST, FULL_PRECISION = "FAST", "FULL_PRECISION"
    OUTPUT, OUTPUT_CONFIDENCE = "OUTPUT", "OUTPUT_CONFIDENCE"
    GROUP = "prediction"
    HELP = (
        "Predicts the Sentinel-2 Scene Classification Layer (SCL) of a whole true-colour scene with a model "
        "trained by Train head or Fine-tune layer4.\n\n"
        "Scene: a raster like the one the model was trained on (same data type and bands, e.g. 8-bit TCI, or "
        "the B02,B03,B04,B8A,B11,B12 reflectance of Prepare L2A). Bands: the scene's band numbers in the order "
        "the model reads them (1,2,3 for TCI); empty takes the bands named like the model's (from the raster's "
        "band descriptions), else the first ones. A scene whose band count, names or order do not match the "
        "model is refused with both lists.\n"
        "Model: the checkpoint (.pt). It is loaded once and reused while the file is unchanged, so batch runs "
        "over many scenes are not slowed by loading. An ONNX model (.onnx, from Export model to ONNX, or any ONNX "
        "segmentation model with Deepness-style metadata) runs through ONNX Runtime instead, in QGIS's own Python "
        "and without PyTorch (pip install onnxruntime); fast mode and full precision do not apply to it, and "
        "DEVICE auto or cuda uses ONNX Runtime's CUDA provider where installed.\n"
        "Tile size (a multiple of 8) and overlap: the scene is cut into tiles that overlap; their class "
        "probabilities are blended with a smooth window, so tile borders leave no seams. Tile size 0 (the "
        "default) predicts as the model was trained: in tiles of its training patch size when that was below "
        "288 px (DeepLab's ASPP reach; such a model can fail on much larger tiles, which get a warning), else "
        "in 512 px tiles; the log says which. Overlap, when not set, is an eighth of the tile size, and must be "
        "less than half of it. Tiles per batch: 0 takes 1 on a CPU (fastest there) and 4 on a GPU, or as many "
        "small tiles as make the same number of pixels; larger batches are faster on a GPU and need more "
        "memory.\n"
        "Device: auto (a CUDA GPU when there is one), cpu, cuda, cuda:N or mps.\n"
        "Extent: optionally predict only part of the scene.\n"
        "Fast mode: runs the backbone at output stride 16 instead of 8, 2-3x faster for big jobs; class edges are "
        "a little smoother (make bench measures how often it agrees with the plain mode).\n"
        "Full precision: computes in float32 where the CPU or GPU would use bfloat16 (or float16 on older "
        "GPUs), about 2x slower there; lower precision changes a few pixels where two classes are nearly "
        "tied. CPUs without native bfloat16 always compute in float32.\n\n"
        "Output: SCL codes (GeoTIFF, same grid as the scene), styled with the SCL colours; scene no-data "
        "(the no-data value, or all bands 0) becomes code 0. Confidence (optional): the winning class's "
        "probability in percent, as a grey ramp.\n"
        "Time: about 0.6 s (bfloat16) to 2.5 s (float32) per 512 x 512 tile on a 2-core CPU, far less on a GPU; "
        "with 512 px tiles a 1830 x 1830 px scene is 16 tiles, a full 5490 x 5490 px tile at 20 m 169. Memory: "
        "about 2 GB, whatever the scene size."
    )

    def name(self) -> str:
        return "predict"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Predict SCL for a scene")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("True-colour scene")))
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS, self.tr("Bands in the model's order (empty: by name, else the first ones)"),
                defaultValue="", optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL, self.tr("Model checkpoint (.pt) or ONNX model (.onnx)"),
                fileFilter="SCL DeepLab models (*.pt *.onnx);;Checkpoints (*.pt);;ONNX models (*.onnx)",
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE,
                self.tr("Tile size (px, multiple of 8; 0: as trained)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=AUTO_TILE,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.OVERLAP,
                self.tr("Overlap between tiles (px; default: an eighth of the tile size)"),
                type=QgsProcessingParameterNumber.Integer,
                minValue=0,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Tiles per batch (0: 1 on a CPU, 4 on a GPU; more small tiles)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(self.DEVICE, self.tr("Device (auto, cpu, cuda, cuda:N, mps)"), "auto")
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.FAST, self.tr("Fast mode (backbone at output stride 16)"), False)
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.FULL_PRECISION, self.tr("Full precision (float32, no bfloat16)"), False)
        )
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent (default: whole scene)"),
                                                       optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Predicted SCL")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_CONFIDENCE, self.tr("Confidence (%)"), optional=True, createByDefault=False
            )
        )

    def tiling(self, parameters, context) -> TilingConfig:
        """TILE_SIZE and OVERLAP; 0 and an unset overlap are chosen per model when it runs."""
        overlap = parameters.get(self.OVERLAP)
        return TilingConfig(
            self.parameterAsInt(parameters, self.TILE_SIZE, context),
            None if overlap is None or overlap == "" else self.parameterAsInt(parameters, self.OVERLAP, context),
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        try:
            self.tiling(parameters, context).validate()
            parse_optional_bands(self.parameterAsString(parameters, self.BANDS, context))
        except InputError as exc:
            return False, str(exc)
        device = self.parameterAsString(parameters, self.DEVICE, context).strip().lower()
        if not DEVICE_PATTERN.match(device or "auto"):
            return False, self.tr('Unknown device "{device}"; use auto, cpu, cuda, cuda:N or mps.').format(
                device=device
            )
        unreadable = self.unreadable_raster(parameters, context, {self.INPUT: self.tr("scene")})
        if unreadable:
            return False, unreadable
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        scene = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        checkpoint = self.parameterAsFile(parameters, self.MODEL, context)
        out_path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        conf_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_CONFIDENCE, context) or None
        refuse_overwriting_inputs({self.INPUT: scene.source(), self.MODEL: checkpoint},
                                  {self.OUTPUT: out_path, self.OUTPUT_CONFIDENCE: conf_path})
        extent = self.extent_bounds(parameters, self.EXTENT, context, scene.crs())
        with core_errors_as_processing_exceptions():
            config = PredictConfig(
                tiling=self.tiling(parameters, context),
                batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                device=self.parameterAsString(parameters, self.DEVICE, context).strip() or "auto",
                bands=parse_optional_bands(self.parameterAsString(parameters, self.BANDS, context)),
                extent=extent,
                fast=self.parameterAsBoolean(parameters, self.FAST, context),
                precision="float32" if self.parameterAsBoolean(parameters, self.FULL_PRECISION, context) else "auto",
            )
            result = dispatch.predict(
                Path(scene.source()), Path(checkpoint), Path(out_path), config,
                confidence=Path(conf_path) if conf_path else None, feedback=feedback,
            )
        feedback.pushInfo(
            self.tr("Predicted {tiles} tiles in {seconds:.1f} s ({per:.2f} s per tile).").format(
                tiles=result.tiles, seconds=result.seconds, per=result.seconds / max(1, result.tiles)
            )
        )
        style_output(context, out_path, RESOURCES / "scl.qml", self.tr("Predicted SCL"))
        if conf_path:
            style_output(context, conf_path, Path(conf_path).with_suffix(".qml"), self.tr("Prediction confidence"))
        return {self.OUTPUT: out_path, self.OUTPUT_CONFIDENCE: conf_path}
