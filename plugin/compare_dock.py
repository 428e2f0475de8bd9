"""The compare dock: a prediction over its reference SCL, blended, swapped and scored by ``evaluate``."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsMapLayer,
    QgsMapLayerProxyModel,
    QgsProcessing,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsDockWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QWidget,
)

from .layer_order import is_drawn_above, move_above

EVALUATE_ID = "scldeeplab:evaluate"
EMPTY = "–"


class ErrorRecordingFeedback(QgsProcessingFeedback):
    """Feedback that keeps the last error, so the dock can show why evaluate failed."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error = ""

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 - QGIS's names
        self.last_error = error
        super().reportError(error, fatalError)


class CompareDock(QgsDockWidget):
    """Pick a prediction and a reference layer, blend the upper one, swap them, and score them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SclDeepLabCompareDock")
        self.setWindowTitle(self.tr("SCL DeepLab: compare"))
        self.scores: dict[str, float | None] = {}
        self.disagreement_layer: QgsRasterLayer | None = None
        self._run: tuple[QgsProcessingAlgRunnerTask, QgsProcessingContext, ErrorRecordingFeedback] | None = None

        self.prediction_combo = self._raster_combo()
        self.reference_combo = self._raster_combo()
        self.top_label = QLabel(EMPTY)
        self.swap_button = QPushButton(self.tr("Swap"))
        self.swap_button.setToolTip(self.tr("Draw the other layer on top (moves it in the Layers panel)"))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(100)
        self.opacity_slider.setToolTip(self.tr("Opacity of the layer drawn on top"))
        self.opacity_value = QLabel("100%")
        self.evaluate_button = QPushButton(self.tr("Evaluate"))
        self.evaluate_button.setToolTip(self.tr(
            "Score the prediction against the reference with the SCL DeepLab evaluate algorithm"))
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.hide()
        self.accuracy_label = QLabel(EMPTY)
        self.miou_label = QLabel(EMPTY)
        self.kappa_label = QLabel(EMPTY)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.setWidget(self._layout())

        self.prediction_combo.layerChanged.connect(self._layers_picked)
        self.reference_combo.layerChanged.connect(self._layers_picked)
        self.swap_button.clicked.connect(self.swap)
        self.opacity_slider.valueChanged.connect(self.set_top_opacity)
        self.evaluate_button.clicked.connect(self.evaluate)
        # Layers reach the layer tree after layersAdded, so follow the tree; while a project is read
        # the tree fills before its layers load, so look again once it is read.
        QgsProject.instance().layerTreeRoot().layerOrderChanged.connect(self._layer_tree_changed)
        QgsProject.instance().readProject.connect(self._layer_tree_changed)
        self._layer_tree_changed()

    def _raster_combo(self) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox()
        combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        return combo

    def _layout(self) -> QWidget:
        body = QWidget()
        form = QFormLayout(body)
        form.addRow(self.tr("Prediction"), self.prediction_combo)
        form.addRow(self.tr("Reference"), self.reference_combo)
        top_row = QHBoxLayout()
        top_row.addWidget(self.top_label, 1)
        top_row.addWidget(self.swap_button)
        form.addRow(self.tr("On top"), top_row)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_value)
        form.addRow(self.tr("Opacity"), opacity_row)
        form.addRow(self.evaluate_button, self.progress_bar)
        form.addRow(self.tr("Pixel accuracy"), self.accuracy_label)
        form.addRow(self.tr("Mean IoU"), self.miou_label)
        form.addRow(self.tr("Kappa"), self.kappa_label)
        form.addRow(self.status_label)
        return body

    # Layers -------------------------------------------------------------------------------

    def prediction(self) -> QgsMapLayer | None:
        return self.prediction_combo.currentLayer()

    def reference(self) -> QgsMapLayer | None:
        return self.reference_combo.currentLayer()

    def _pair(self) -> tuple[QgsMapLayer, QgsMapLayer] | None:
        prediction, reference = self.prediction(), self.reference()
        if prediction is None or reference is None or prediction.id() == reference.id():
            return None
        return prediction, reference

    def top_layer(self) -> QgsMapLayer | None:
        """The one of the two picked layers that QGIS draws above the other."""
        pair = self._pair()
        if pair is None:
            return None
        above = is_drawn_above(QgsProject.instance().layerTreeRoot(), *pair)
        if above is None:
            return None
        return pair[0] if above else pair[1]

    def _layer_tree_changed(self, *_args) -> None:
        if self._pair() is None:
            self._pick_defaults()
        self._refresh_top()

    def _pick_defaults(self) -> None:
        """Offer two different layers: names with "predict" as prediction, another as reference."""
        rasters = [layer for layer in QgsProject.instance().layerTreeRoot().layerOrder()
                   if layer.type() == QgsMapLayer.RasterLayer]
        if len(rasters) < 2:
            self._layers_picked()
            return
        predicted = [layer for layer in rasters if "predict" in layer.name().lower()]
        prediction = predicted[0] if predicted else rasters[0]
        others = [layer for layer in rasters if layer.id() != prediction.id()]
        scl_like = [layer for layer in others if "scl" in layer.name().lower()]
        self.prediction_combo.setLayer(prediction)
        self.reference_combo.setLayer((scl_like or others)[0])

    def _layers_picked(self, *_layer) -> None:
        self._show_scores({})
        self._refresh_top()
        pair_ok = self._pair() is not None
        self.swap_button.setEnabled(pair_ok)
        self.evaluate_button.setEnabled(pair_ok and self._run is None)
        if not pair_ok:
            self.status_label.setText(self.tr("Pick two different raster layers."))
        else:
            self.status_label.clear()

    def _refresh_top(self) -> None:
        top = self.top_layer()
        self.top_label.setText(top.name() if top is not None else EMPTY)
        self.opacity_slider.setEnabled(top is not None)
        if top is not None and top.renderer() is not None:
            self.opacity_slider.blockSignals(True)
            self.opacity_slider.setValue(round(100 * top.renderer().opacity()))
            self.opacity_slider.blockSignals(False)
            self.opacity_value.setText(f"{self.opacity_slider.value()}%")

    # Blend and swap -----------------------------------------------------------------------

    def set_top_opacity(self, percent: int) -> None:
        """Give the upper layer ``percent`` % opacity, so the lower one shows through."""
        self.opacity_value.setText(f"{percent}%")
        top = self.top_layer()
        if top is None or top.renderer() is None:
            return
        top.renderer().setOpacity(percent / 100)
        top.triggerRepaint()
        top.emitStyleChanged()

    def swap(self) -> None:
        """Draw the lower layer on top; it takes over the blend, the other becomes opaque."""
        top = self.top_layer()
        pair = self._pair()
        if top is None or pair is None:
            return
        bottom = pair[1] if top.id() == pair[0].id() else pair[0]
        percent = self.opacity_slider.value()
        move_above(QgsProject.instance().layerTreeRoot(), bottom, top)
        if top.renderer() is not None:
            top.renderer().setOpacity(1.0)
            top.triggerRepaint()
            top.emitStyleChanged()
        self._refresh_top()
        self.opacity_slider.setValue(percent)
        self.set_top_opacity(percent)

    # Evaluate -----------------------------------------------------------------------------

    def evaluate(self) -> None:
        """Run ``scldeeplab:evaluate`` on the two layers in a background task."""
        pair = self._pair()
        if pair is None or self._run is not None:
            return
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(EVALUATE_ID)
        if algorithm is None:
            self.status_label.setText(self.tr(
                "The SCL DeepLab evaluate algorithm is not available: enable the SCL DeepLab plugin "
                "and check the Processing Toolbox."))
            return
        prediction, reference = pair
        parameters = {"PREDICTION": prediction.source(), "REFERENCE": reference.source()}
        for output in algorithm.destinationParameterDefinitions():
            optional = output.flags() & QgsProcessingParameterDefinition.FlagOptional
            if not optional or output.name() == "OUTPUT_DISAGREEMENT":
                parameters[output.name()] = QgsProcessing.TEMPORARY_OUTPUT
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        feedback = ErrorRecordingFeedback()
        # Emitted from the task's thread: a slot of this widget runs queued on the GUI thread.
        feedback.progressChanged.connect(self._progress)
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        task.executed.connect(self._evaluated)
        self._run = (task, context, feedback)
        self.disagreement_layer = None
        self._show_scores({})
        self.evaluate_button.setEnabled(False)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.status_label.setText(self.tr("Evaluating {prediction} against {reference}…").format(
            prediction=prediction.name(), reference=reference.name()))
        QgsApplication.taskManager().addTask(task)

    @pyqtSlot(float)
    def _progress(self, percent: float) -> None:
        self.progress_bar.setValue(round(percent))

    def is_evaluating(self) -> bool:
        return self._run is not None

    def _evaluated(self, successful: bool, results: dict) -> None:
        _task, _context, feedback = self._run
        self._run = None
        self.progress_bar.hide()
        self.evaluate_button.setEnabled(self._pair() is not None)
        if not successful:
            self.status_label.setText(self.tr("Evaluate failed: {error}").format(
                error=feedback.last_error or self.tr("see the Log Messages panel (Processing).")))
            return
        # evaluate answers None for a score with no meaning (kappa when one class fills both layers).
        self._show_scores({
            "pixel_accuracy": results.get("PIXEL_ACCURACY"),
            "miou": results.get("MIOU"),
            "kappa": results.get("KAPPA"),
        })
        self.status_label.clear()
        disagreement = results.get("OUTPUT_DISAGREEMENT")
        if disagreement:
            self._add_disagreement(Path(disagreement))

    def _show_scores(self, scores: dict[str, float | None]) -> None:
        self.scores = scores

        def shown(key: str, template: str) -> str:
            if not scores:
                return EMPTY
            value = scores.get(key)
            return template.format(value) if value is not None else self.tr("undefined")

        self.accuracy_label.setText(shown("pixel_accuracy", "{:.1%}"))
        self.miou_label.setText(shown("miou", "{:.1%}"))
        self.kappa_label.setText(shown("kappa", "{:.3f}"))

    def _add_disagreement(self, path: Path) -> None:
        """Add the disagreement raster on top, styled by the .qml that evaluate writes beside it."""
        pair = self._pair()
        name = self.tr("Disagreement")
        if pair is not None:
            name = self.tr("Disagreement {prediction} / {reference}").format(
                prediction=pair[0].name(), reference=pair[1].name())
        layer = QgsRasterLayer(str(path), name)
        if not layer.isValid():
            self.status_label.setText(self.tr("Could not open the disagreement layer {path}.").format(path=path))
            return
        style = path.with_suffix(".qml")
        if style.exists():
            layer.loadNamedStyle(str(style))
        QgsProject.instance().addMapLayer(layer)
        self.disagreement_layer = layer

    # Lifetime -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Disconnect from the project; called by the plugin's unload before the dock is deleted."""
        QgsProject.instance().layerTreeRoot().layerOrderChanged.disconnect(self._layer_tree_changed)
        QgsProject.instance().readProject.disconnect(self._layer_tree_changed)
        if self._run is not None:
            task = self._run[0]
            task.executed.disconnect(self._evaluated)
            task.cancel()
            self._run = None
