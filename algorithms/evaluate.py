"""``scldeeplab:evaluate``: how a predicted SCL agrees with the real one, as numbers, a report and a layer."""

from __future__ import annotations

import math
from pathlib import Path

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..model_core.evaluation.evaluate import EvaluationOutputs, evaluate_to_files
from .base import (
    FeedbackProgress,
    SclAlgorithm,
    core_errors_as_processing_exceptions,
    refuse_overwriting_inputs,
    style_output,
)


def _finite(value: float) -> float | None:
    # Kappa is undefined when a single class fills both rasters; NaN would break qgis_process's JSON.
    return value if math.isfinite(value) else None


class Evaluate(SclAlgorithm):
    """Pixel accuracy, mean IoU, kappa, per-class scores, confusion matrix, report and disagreement layer."""

    PREDICTION, REFERENCE, EXTENT, IMAGE = "PREDICTION", "REFERENCE", "EXTENT", "IMAGE"
    OUTPUT_REPORT, OUTPUT_MATRIX, OUTPUT_MATRIX_PNG = "OUTPUT_REPORT", "OUTPUT_MATRIX", "OUTPUT_MATRIX_PNG"
    OUTPUT_DISAGREEMENT, OUTPUT_FIGURE, OUTPUT_METRICS = "OUTPUT_DISAGREEMENT", "OUTPUT_FIGURE", "OUTPUT_METRICS"
    PIXEL_ACCURACY, MIOU, KAPPA = "PIXEL_ACCURACY", "MIOU", "KAPPA"
    GROUP = "evaluation"
    HELP = (
        "Compares a predicted SCL (e.g. from Predict SCL for a scene) with the real Scene Classification "
        "Layer of the same tile and date.\n\n"
        "Reference SCL: may have another resolution or CRS (e.g. the 20 m SCL beside a 10 m prediction); it "
        "is brought onto the prediction's grid with nearest neighbour. Code 0 (no data) in either raster is "
        "left out; values other than SCL codes 0-11 are refused.\n"
        "Extent: optionally compare only part of the scene (also the window of the result figure).\n"
        "True-colour image (optional): shown beside reference and prediction in the result figure.\n\n"
        "Outputs: pixel accuracy, mean IoU and Cohen's kappa (also returned as numbers, so batch mode and "
        "qgis_process --json list them); an HTML report with per-class IoU, precision, recall, F1 and pixel "
        "counts and the figures; the confusion matrix as CSV (pixel counts) and PNG (rows normalised); a "
        "disagreement layer, transparent where the two agree and coloured by the reference class where they "
        "differ; the result figure (input | reference | prediction); the numbers as JSON. Each file output "
        "can be skipped; the numbers always come back. "
        "Takes seconds for a 5490 x 5490 px scene."
    )

    def name(self) -> str:
        return "evaluate"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Evaluate prediction against the SCL")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterRasterLayer(self.PREDICTION, self.tr("Predicted SCL")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference SCL")))
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent (default: whole prediction)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(self.IMAGE, self.tr("Image for the figure (true colour, or false colour of other bands)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_REPORT, self.tr("Report (HTML)"), fileFilter=self.tr("HTML files (*.html)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_MATRIX, self.tr("Confusion matrix (CSV)"), fileFilter=self.tr("CSV files (*.csv)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_MATRIX_PNG, self.tr("Confusion matrix figure (PNG)"),
                fileFilter=self.tr("PNG files (*.png)"), optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(self.OUTPUT_DISAGREEMENT, self.tr("Disagreement"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_FIGURE, self.tr("Result figure (PNG)"), fileFilter=self.tr("PNG files (*.png)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_METRICS, self.tr("Metrics (JSON)"), fileFilter=self.tr("JSON files (*.json)"),
                optional=True,
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.PIXEL_ACCURACY, self.tr("Pixel accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, self.tr("Mean IoU")))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, self.tr("Cohen's kappa")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        rasters = {self.PREDICTION: "prediction", self.REFERENCE: "reference SCL", self.IMAGE: "image"}
        unreadable = self.unreadable_raster(parameters, context, {k: self.tr(v) for k, v in rasters.items()})
        if unreadable:
            return False, unreadable
        return super().checkParameterValues(parameters, context)

    def _file(self, parameters, name: str, context) -> Path | None:
        path = self.parameterAsFileOutput(parameters, name, context)
        return Path(path) if path else None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        prediction = self.parameterAsRasterLayer(parameters, self.PREDICTION, context)
        reference = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        image = self.parameterAsRasterLayer(parameters, self.IMAGE, context) if parameters.get(self.IMAGE) else None
        disagreement = self.parameterAsOutputLayer(parameters, self.OUTPUT_DISAGREEMENT, context) or None
        extent = self.extent_bounds(parameters, self.EXTENT, context, prediction.crs())
        outputs = EvaluationOutputs(
            report=self._file(parameters, self.OUTPUT_REPORT, context),
            matrix_csv=self._file(parameters, self.OUTPUT_MATRIX, context),
            matrix_png=self._file(parameters, self.OUTPUT_MATRIX_PNG, context),
            disagreement=Path(disagreement) if disagreement else None,
            figure=self._file(parameters, self.OUTPUT_FIGURE, context),
            metrics_json=self._file(parameters, self.OUTPUT_METRICS, context),
        )
        refuse_overwriting_inputs(
            {self.PREDICTION: prediction.source(), self.REFERENCE: reference.source(),
             self.IMAGE: image.source() if image is not None else None},
            {self.OUTPUT_REPORT: outputs.report, self.OUTPUT_MATRIX: outputs.matrix_csv,
             self.OUTPUT_MATRIX_PNG: outputs.matrix_png, self.OUTPUT_DISAGREEMENT: outputs.disagreement,
             self.OUTPUT_FIGURE: outputs.figure, self.OUTPUT_METRICS: outputs.metrics_json},
        )
        with core_errors_as_processing_exceptions():
            result = evaluate_to_files(
                Path(prediction.source()), Path(reference.source()), outputs, extent=extent,
                image=Path(image.source()) if image is not None else None, progress=FeedbackProgress(feedback),
            )
        if disagreement:
            style_output(context, disagreement, Path(disagreement).with_suffix(".qml"), self.tr("Disagreement"))
        s = result.scores
        return {
            self.PIXEL_ACCURACY: _finite(s.pixel_accuracy),
            self.MIOU: _finite(s.mean_iou),
            self.KAPPA: _finite(s.kappa),
            self.OUTPUT_REPORT: str(outputs.report) if outputs.report else None,
            self.OUTPUT_MATRIX: str(outputs.matrix_csv) if outputs.matrix_csv else None,
            self.OUTPUT_MATRIX_PNG: str(outputs.matrix_png) if outputs.matrix_png else None,
            self.OUTPUT_DISAGREEMENT: disagreement,
            self.OUTPUT_FIGURE: str(outputs.figure) if outputs.figure else None,
            self.OUTPUT_METRICS: str(outputs.metrics_json) if outputs.metrics_json else None,
        }
