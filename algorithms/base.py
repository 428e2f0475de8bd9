"""What every SCL DeepLab algorithm shares: groups, help, progress, errors and styling."""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterNumber,
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


def torch_install_hint() -> str:
    """What to do when PyTorch is missing from the Python QGIS runs."""
    if sys.platform.startswith("win"):
        how = 'open the "OSGeo4W Shell" and run: python -m pip install torch torchvision'
    elif sys.platform == "darwin":
        how = "run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install torch torchvision"
    else:
        how = f"run: {_linux_pip_install()} torch torchvision"
    return (
        "PyTorch and torchvision are not installed in the Python that QGIS uses. "
        f"To install them, {how}; then restart QGIS."
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
        raise QgsProcessingException(str(exc)) from exc
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {"torch", "torchvision"}:
            raise QgsProcessingException(torch_install_hint()) from exc
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

    def checkParameterValues(self, parameters, context):  # noqa: N802 - QGIS's name
        message = number_out_of_range(self, parameters)
        if message:
            return False, message
        return super().checkParameterValues(parameters, context)


def refuse_overwriting_inputs(
    inputs: Mapping[str, str | Path | None], outputs: Mapping[str, str | Path | None]
) -> None:
    """Raise ``QgsProcessingException`` when an output path is an input's, or another output's, before any work.

    Keys are parameter names, values paths (a layer's source is fine); empty values
    are skipped. Paths are compared resolved, so links, ".." and "~" do not hide a match.
    """

    def resolved(value: str | Path | None) -> Path | None:
        text = str(value or "").split("|", 1)[0].strip()  # a layer source may carry "|layername=..."
        return Path(text).expanduser().resolve() if text else None

    sources = [(name, resolved(path)) for name, path in inputs.items()]
    seen: list[tuple[str, Path | None]] = []
    for out_name, out_value in outputs.items():
        target = resolved(out_value)
        if target is None:
            continue
        for in_name, source in sources:
            if source == target:
                raise QgsProcessingException(
                    f"The output {out_name} ({target}) is the input {in_name}: writing it would overwrite "
                    f"that input. Choose another path for {out_name}."
                )
        for other_name, other in seen:
            if other == target:
                raise QgsProcessingException(
                    f"The outputs {other_name} and {out_name} are the same file ({target}); one would overwrite "
                    "the other. Choose different paths."
                )
        seen.append((out_name, target))


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
