"""``scldeeplab:environment`` ("Check runtime"): which Python runs the model, with what, on which device."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputBoolean, QgsProcessingOutputString

from ..model_core.cli.environment import report_lines, runtime_report
from ..model_core.errors import SclDeepLabError
from ..runtime.dispatch import chosen_runtime, no_runtime_message, run_task
from ..runtime.interpreter import onnxruntime_importable, torch_importable
from ..runtime.settings import worker_python
from .base import SclAlgorithm, core_errors_as_processing_exceptions

STRINGS = {
    "RUNTIME": "Runtime (in-process or worker)",
    "RUNTIME_REASON": "Why this runtime",
    "WORKER_PYTHON": "Worker Python",
    "PYTHON": "Python version",
    "PYTHON_EXECUTABLE": "Python executable",
    "TORCH_VERSION": "torch version",
    "TORCHVISION_VERSION": "torchvision version",
    "RASTERIO_VERSION": "rasterio version",
    "NUMPY_VERSION": "numpy version",
    "ONNXRUNTIME_VERSION": "onnxruntime version (predicts .onnx models without PyTorch)",
    "MISSING": "Missing packages",
    "CUDA_DEVICES": "CUDA GPUs",
    "CPU": "CPU model",
    "DEVICE": "Device picked by DEVICE auto",
    "PRECISION": "Precision picked",
    "DEVICE_REASON": "Why this device and precision",
    "ERROR": "What went wrong (empty when the runtime works)",
    "WEIGHTS": "Pretrained weights on disk",
}
BOOLEANS = {
    "CUDA_AVAILABLE": "CUDA available",
    "MPS_AVAILABLE": "Apple MPS available",
    "CPU_NATIVE_BF16": "CPU has native bfloat16",
    "READY": "Ready to run the model",
}


class Environment(SclAlgorithm):
    """Reports the runtime the model algorithms use, as log lines and as outputs."""

    GROUP = "setup"
    HELP = (
        "Checks where SCL DeepLab runs its model and what that Python has. No inputs.\n\n"
        "Runtime: in-process (QGIS's own Python) or worker (a separate Python, set in Processing > Options > "
        "Providers > SCL DeepLab > Worker Python, or the environment variables SCL_DEEPLAB_RUNTIME and "
        "SCL_DEEPLAB_WORKER_PYTHON).\n"
        "Reports Python and the versions of torch, torchvision, rasterio and numpy, whether CUDA or Apple MPS is "
        "available and the GPU names, the CPU and whether it computes bfloat16 natively, and the device and "
        "precision that DEVICE auto picks, with the reason, and the pretrained weight sets on disk (get others with "
        "Download pretrained weights). When PyTorch is missing it says what to install "
        "and does not fail. Takes a few seconds."
    )

    def name(self) -> str:
        return "environment"

    def displayName(self) -> str:  # noqa: N802 - QGIS's name
        return self.tr("Check runtime")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS's name
        for key, label in STRINGS.items():
            self.addOutput(QgsProcessingOutputString(key, self.tr(label)))
        for key, label in BOOLEANS.items():
            self.addOutput(QgsProcessingOutputBoolean(key, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        with core_errors_as_processing_exceptions():  # an unknown RUNTIME setting
            runtime, why = chosen_runtime()
        feedback.pushInfo(self.tr("Runtime: {runtime} ({why}).").format(runtime=runtime, why=why))
        if runtime == "worker":
            feedback.pushInfo(self.tr("Worker Python: {python}").format(python=worker_python()))
        report, error = {}, ""
        if runtime == "in-process" and not torch_importable():
            report, error = runtime_report(), no_runtime_message()
            if onnxruntime_importable():
                feedback.pushInfo(self.tr("ONNX Runtime imports in QGIS's Python: Predict runs .onnx models "
                                          "in-process, without PyTorch."))
        else:
            try:
                report = run_task("environment", {}, feedback)
            except SclDeepLabError as exc:  # the report is the answer, so it never fails
                error = str(exc)
        if report:
            for line in report_lines(report):
                feedback.pushInfo(line)
        if error:
            feedback.reportError(error, fatalError=False)
        outputs = {key.lower(): "" for key in STRINGS}
        outputs.update({k: v for k, v in report.items()})
        results = {key: str(outputs.get(key.lower(), "")) for key in STRINGS}
        results.update(RUNTIME=runtime, RUNTIME_REASON=why, WORKER_PYTHON=worker_python(), ERROR=error,
                       DEVICE_REASON=str(report.get("reason", "")))
        results.update({key: bool(report.get(key.lower(), False)) for key in BOOLEANS})
        results["READY"] = bool(report) and not error and not report.get("missing")
        return results
