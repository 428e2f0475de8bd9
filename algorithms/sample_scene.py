"""``scldeeplab:samplescene``: write a synthetic Sentinel-2-like scene and its SCL."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination

from ..model_core import scl
from ..model_core.data.synthetic import make_sample_scene
from .base import (
    RESOURCES,
    FeedbackProgress,
    SclAlgorithm,
    core_errors_as_processing_exceptions,
    refuse_overwriting_inputs,
    style_output,
)


class SampleScene(SclAlgorithm):
    """A seeded synthetic scene for trying the plugin without downloading anything."""

    SIZE, SEED, OUTPUT_IMAGE, OUTPUT_SCL = "SIZE", "SEED", "OUTPUT_IMAGE", "OUTPUT_SCL"
    GROUP = "data"
    HELP = (
        "Writes a synthetic Sentinel-2-like scene for trying SCL DeepLab without downloading data: "
        "a 3-band 8-bit true-colour GeoTIFF (UTM zone 33N, 20 m pixels) and its Scene Classification "
        "Layer (SCL, codes 0-11, styled). All 11 SCL classes appear in coherent regions (vegetation, "
        "bare soil, water, snow, dark areas, clouds with their shadows, thin cirrus, a few saturated "
        "pixels), plus a no-data corner as on real tiles.\n\n"
        "Size: width and height in pixels. Seed: the same seed always gives the same scene.\n\n"
        "Takes about a second for 1024 x 1024 px, a few seconds for 2048 x 2048 px."
    )

    def name(self) -> str:
        return "samplescene"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Make a sample scene")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SIZE,
                self.tr("Size (px, width and height)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=1024,
                minValue=64,
                maxValue=20000,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed"), type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_IMAGE, self.tr("True-colour scene")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT_SCL, self.tr("Scene classification (SCL)"))
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        size = self.parameterAsInt(parameters, self.SIZE, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        image = self.parameterAsOutputLayer(parameters, self.OUTPUT_IMAGE, context)
        scl_path = self.parameterAsOutputLayer(parameters, self.OUTPUT_SCL, context)
        refuse_overwriting_inputs({}, {self.OUTPUT_IMAGE: image, self.OUTPUT_SCL: scl_path})
        with core_errors_as_processing_exceptions():
            scene = make_sample_scene(
                Path(image), Path(scl_path), size=size, seed=seed, progress=FeedbackProgress(feedback)
            )
        shares = ", ".join(
            f"{c.code} {c.name} {100.0 * scene.class_counts[c.code] / (size * size):.3g}%" for c in scl.SCL_CLASSES
        )
        feedback.pushInfo(self.tr("Class shares: {shares}").format(shares=shares))
        style_output(context, scl_path, RESOURCES / "scl.qml", self.tr("Sample SCL"))
        return {self.OUTPUT_IMAGE: image, self.OUTPUT_SCL: scl_path}
