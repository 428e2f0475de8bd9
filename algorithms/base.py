"""What every SCL DeepLab algorithm shares: groups, help, progress, errors and styling."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..model_core import atomic
from ..model_core.errors import Canceled, InputError, SclDeepLabError
from ..runtime.feedback import FeedbackProgress  # noqa: F401 - algorithms take it from here
from ..runtime.interpreter import onnxruntime_install_hint, torch_install_hint

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"

GROUPS = {
    "data": "Data",
    "training": "Training",
    "prediction": "Prediction",
    "evaluation": "Evaluation",
    "setup": "Set-up",
}


@contextmanager
def core_errors_as_processing_exceptions() -> Iterator[None]:
    """Turn model_core's errors into the messages a Processing user sees."""
    try:
        yield
    except Canceled as exc:
        raise QgsProcessingException(str(exc)) from exc
    except SclDeepLabError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "onnxruntime":
            raise QgsProcessingException(onnxruntime_install_hint()) from exc
        raise QgsProcessingException(str(exc)) from exc
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "torchvision"}:
            raise QgsProcessingException(torch_install_hint()) from exc
        if exc.name == "onnxruntime":
            raise QgsProcessingException(onnxruntime_install_hint()) from exc
        raise


def crs_for_core(crs: QgsCoordinateReferenceSystem) -> str | None:
    """A QGIS CRS as text rasterio understands (EPSG code, else WKT); None when invalid."""
    if not crs.isValid():
        return None
    if crs.authid().upper().startswith("EPSG:"):
        return crs.authid()
    return crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


class StyleFromQml(QgsProcessingLayerPostProcessorInterface):
    """Applies a QML style to an output layer once Processing has loaded it."""

    def __init__(self, qml_path: Path) -> None:
        super().__init__()
        self.qml_path = qml_path

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS's name
        layer.loadNamedStyle(str(self.qml_path))
        layer.triggerRepaint()


# Post-processors must outlive processAlgorithm, or Python collects them before QGIS calls them.
_POST_PROCESSORS: list[StyleFromQml] = []


def style_output(context: QgsProcessingContext, layer_path: str, qml_path: Path, name: str | None = None) -> None:
    """Style an output raster with ``qml_path`` when Processing loads it into the project."""
    if not context.willLoadLayerOnCompletion(layer_path):
        return
    details = context.layerToLoadOnCompletionDetails(layer_path)
    if name:
        details.name = name
    post = StyleFromQml(qml_path)
    _POST_PROCESSORS.append(post)
    details.setPostProcessor(post)


class SclAlgorithm(QgsProcessingAlgorithm):
    """Base of every SCL DeepLab algorithm: subclasses set GROUP and HELP and build the form."""

    GROUP = "data"
    HELP = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self):  # noqa: N802 - QGIS's name
        return type(self)()

    def group(self) -> str:
        return self.tr(GROUPS[self.GROUP])

    def groupId(self) -> str:  # noqa: N802 - QGIS's name
        return self.GROUP

    def shortHelpString(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr(self.HELP)

    def icon(self) -> QIcon:
        return QIcon(str(RESOURCES / "icon.svg"))

    def unreadable_raster(self, parameters: dict[str, Any], context: QgsProcessingContext,
                          rasters: dict[str, str]) -> str | None:
        """The message for the first given raster parameter QGIS cannot open, or None when all can be read.

        ``rasters`` maps parameter names to what the user calls them ("scene", "SCL mask"), already translated.
        """
        for key, what in rasters.items():
            if parameters.get(key) and self.parameterAsRasterLayer(parameters, key, context) is None:
                message = self.tr("Cannot read the {what} {value}: check that the file exists and is a raster.")
                return message.format(what=what, value=parameters[key])
        return None

    def extent_bounds(
        self,
        parameters: dict[str, Any],
        name: str,
        context: QgsProcessingContext,
        crs: QgsCoordinateReferenceSystem | None = None,
    ) -> tuple[float, float, float, float] | None:
        """The extent parameter ``name`` as (xmin, ymin, xmax, ymax) in ``crs`` (else in its own CRS).

        None when the extent is not given: the algorithm then works on the whole raster.
        """
        if not parameters.get(name):
            return None
        rect = self.parameterAsExtent(parameters, name, context, crs or QgsCoordinateReferenceSystem())
        if rect.isNull():
            return None
        return rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()

    def extent_crs(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str | None:
        """The CRS the extent parameter ``name`` was given in, as text rasterio understands; None when unknown."""
        return crs_for_core(self.parameterAsExtentCrs(parameters, name, context))

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        message = number_out_of_range(self, parameters)
        if message:
            return False, message
        return super().checkParameterValues(parameters, context)


def refuse_overwriting_inputs(
    inputs: Mapping[str, str | Path | None], outputs: Mapping[str, str | Path | None]
) -> None:
    """Raise ``QgsProcessingException`` when an output path is an input's, or another output's, before any work
    (``atomic.refuse_overwriting_inputs``; keys are parameter names)."""
    try:
        atomic.refuse_overwriting_inputs(inputs, outputs)
    except InputError as exc:
        raise QgsProcessingException(str(exc)) from exc


def number_out_of_range(algorithm: QgsProcessingAlgorithm, parameters: Mapping[str, object]) -> str | None:
    """Say which number parameter is outside its declared limits (QGIS itself only says "Incorrect parameter value")."""
    for definition in algorithm.parameterDefinitions():
        if not isinstance(definition, QgsProcessingParameterNumber):
            continue
        try:
            value = float(parameters.get(definition.name()))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue  # unset, or an expression: QGIS checks those
        whole = definition.dataType() == QgsProcessingParameterNumber.Integer
        shown = (lambda v: f"{v:.0f}") if whole else (lambda v: f"{v:g}")
        low, high = definition.minimum(), definition.maximum()
        limits = []
        if low > -1e300:
            limits.append(f"at least {shown(low)}")
        if high < 1e300:
            limits.append(f"at most {shown(high)}")
        if value < low or value > high:
            return (
                f"{definition.description()} ({definition.name()}) must be {' and '.join(limits)}, "
                f"not {shown(value)}."
            )
    return None
