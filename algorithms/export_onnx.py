"""``scldeeplab:exportonnx``: a trained checkpoint as an ONNX model, for prediction without PyTorch."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..runtime.dispatch import run_task
from .base import SclAlgorithm, core_errors_as_processing_exceptions


class ExportOnnx(SclAlgorithm):
    """Writes the checkpoint's prediction graph and metadata to an .onnx file, float32 or int8."""

    MODEL, INT8, PATCHES, CALIBRATION_TILES = "MODEL", "INT8", "PATCHES", "CALIBRATION_TILES"
    RESOLUTION, OUTPUT = "RESOLUTION", "OUTPUT"
    GROUP = "prediction"
    HELP = (
        "Exports a model trained by Train head or Fine-tune layer4 to ONNX, so that Predict SCL for a scene (and "
        "other tools such as the Deepness plugin) can run it through ONNX Runtime, without PyTorch: "
        "`pip install onnxruntime` in the Python QGIS uses is enough.\n\n"
        "Model: the checkpoint (.pt). Exporting needs PyTorch and the onnx package (in QGIS's Python or the "
        "worker Python).\n"
        "int8: quantises the convolutions to 8-bit integers, with value ranges measured on training patches "
        "(give the patches index.json). About 2.6x as fast as float32 on AVX-512/AMX CPUs, 1.7x on AVX2-only "
        "ones; a trained model agrees with its float32 self on about 99.6 % of pixels. The first layer, ASPP's "
        "image pooling branch, the last layer, the pixel head, upsampling and softmax stay float32.\n"
        "Resolution: the pixel size in metres recorded for Deepness (10 for Sentinel-2 true colour).\n\n"
        "Output: the .onnx file (about 160 MB float32, 42 MB int8) with the class table, band order, "
        "normalisation, tile size and where the weights came from in its metadata, plus the keys Deepness reads. "
        "Time: 10-30 s; int8 adds about 1 s per calibration patch."
    )

    def name(self) -> str:
        return "exportonnx"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Export model to ONNX")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterFile(self.MODEL, self.tr("Model checkpoint"), extension="pt"))
        self.addParameter(QgsProcessingParameterBoolean(self.INT8, self.tr("int8 (quantised, faster on CPUs)"), False))
        self.addParameter(
            QgsProcessingParameterFile(
                self.PATCHES, self.tr("Patches index.json to calibrate int8 on"), extension="json", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.CALIBRATION_TILES, self.tr("Calibration patches"), type=QgsProcessingParameterNumber.Integer,
                defaultValue=32, minValue=1, maxValue=1000,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.RESOLUTION, self.tr("Pixel size recorded for Deepness (m)"),
                type=QgsProcessingParameterNumber.Double, defaultValue=10.0, minValue=0.01,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT, self.tr("ONNX model"), self.tr("ONNX models (*.onnx)"))
        )

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        if self.parameterAsBoolean(parameters, self.INT8, context) and not self.parameterAsFile(
            parameters, self.PATCHES, context
        ):
            return False, self.tr("int8 needs training patches to calibrate on: choose the patches index.json.")
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        out_path = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        patches = self.parameterAsFile(parameters, self.PATCHES, context)
        args = {
            "checkpoint": Path(self.parameterAsFile(parameters, self.MODEL, context)),
            "output": Path(out_path),
            "int8": self.parameterAsBoolean(parameters, self.INT8, context),
            "patches": Path(patches) if patches else None,
            "calibration_tiles": self.parameterAsInt(parameters, self.CALIBRATION_TILES, context),
            "resolution_m": self.parameterAsDouble(parameters, self.RESOLUTION, context),
        }
        with core_errors_as_processing_exceptions():
            result = run_task("export", args, feedback)
        if result.get("kept_float"):
            feedback.pushInfo(self.tr("Kept in float32: {layers}.").format(layers=", ".join(result["kept_float"])))
        return {self.OUTPUT: out_path}
