"""What every SCL DeepLab algorithm shares: groups, help, progress, errors and styling."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..model_core.errors import Canceled, SclDeepLabError

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"

GROUPS = {
    "data": "Data",
    "training": "Training",
    "prediction": "Prediction",
    "evaluation": "Evaluation",
    "setup": "Set-up",
}


class FeedbackProgress:
    """Adapts ``QgsProcessingFeedback`` to model_core's ``Progress`` protocol."""

    def __init__(self, feedback: QgsProcessingFeedback | None) -> None:
        self._feedback = feedback or QgsProcessingFeedback()

    def set_progress(self, percent: float) -> None:
        self._feedback.setProgress(percent)

    def is_canceled(self) -> bool:
        return self._feedback.isCanceled()

    def info(self, message: str) -> None:
        self._feedback.pushInfo(message)

    def warn(self, message: str) -> None:
        self._feedback.pushWarning(message)


def _linux_pip_install() -> str:
    """The pip command for the Python QGIS embeds (there sys.executable is QGIS or any python3 on PATH)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = Path(sys.prefix) / "bin" / f"python{version}"
    command = f"{python if python.exists() else 'python3'} -m pip install"
    # Debian and Ubuntu mark the system Python externally managed (PEP 668): install for this user only.
    managed = (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
    if managed and sys.prefix == sys.base_prefix:
        command += " --user --break-system-packages"
    return command


def _pip_install_how(packages: str) -> str:
    """How to pip-install ``packages`` into the Python QGIS uses, on this platform."""
    if sys.platform.startswith("win"):
        return f'open the "OSGeo4W Shell" and run: python -m pip install {packages}'
    if sys.platform == "darwin":
        return f"run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install {packages}"
    return f"run: {_linux_pip_install()} {packages}"


def torch_install_hint() -> str:
    """What to do when PyTorch is missing from the Python QGIS runs."""
    return (
        "PyTorch and torchvision are not installed in the Python that QGIS uses. "
        f"To install them, {_pip_install_how('torch torchvision')}; then restart QGIS."
    )


def onnxruntime_install_hint() -> str:
    """What to do when ONNX Runtime is missing from the Python QGIS runs (.onnx models need only it)."""
    return (
        "ONNX Runtime is not installed in the Python that QGIS uses, so .onnx models cannot run "
        f"(pip install onnxruntime). To install it, {_pip_install_how('onnxruntime')}; then restart QGIS."
    )


def require_torch() -> None:
    """Raise a clear QgsProcessingException when torch or torchvision cannot be imported."""
    for module in ("torch", "torchvision"):
        if importlib.util.find_spec(module) is None:
            raise QgsProcessingException(torch_install_hint())


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
